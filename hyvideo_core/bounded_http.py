"""HTTP requests to servers we do not control: one total deadline, capped answers, no redirects.

``urllib`` gives each socket operation its own timeout (a server that sends one byte a second
never trips it), reads a body of any size into memory, lets ``http.client`` errors escape as
their own classes and follows redirects, re-sending headers such as ``Authorization`` to
whatever host the redirect names. :func:`request` instead

* bounds the whole exchange (connect, send, status line, headers, every body read) by one
  :class:`Deadline`: each socket operation may only wait for what is left of it;
* refuses a body over ``max_body`` bytes (at once when Content-Length says so, else as soon as
  the cap is passed), or streams the body into a file object without holding it;
* never follows a redirect: a 3xx answer is a :class:`MalformedAnswer` naming the target, so a
  credential is never sent anywhere but the address the caller gave;
* talks to the address directly (``HTTP(S)_PROXY`` are not read: ComfyUI and rewrite servers
  are local or on the LAN);
* turns every failure into one of three classes: :class:`ConnectionFailed` (refused, reset,
  closed early, truncated body), :class:`DeadlineExceeded` and :class:`MalformedAnswer` (not
  HTTP, over the cap, a redirect).

Standard library only, no relative imports: the headless ComfyUI client
(``scripts/hvs_queue.py``), which must run with a bare Python, uses this file as well.
"""
from __future__ import annotations

import http.client
import io
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import BinaryIO, Mapping, Optional

__all__ = ["Deadline", "Answer", "request", "recv_before", "HTTPFailure", "ConnectionFailed",
           "DeadlineExceeded", "MalformedAnswer"]

_CHUNK = 1 << 16


class HTTPFailure(Exception):
    """Base class: the exchange with the server did not give a usable answer."""


class ConnectionFailed(HTTPFailure):
    """No connection, or it broke before the answer was complete."""


class DeadlineExceeded(HTTPFailure):
    """The answer was not complete before the deadline."""


class MalformedAnswer(HTTPFailure):
    """The server answered something that is not usable HTTP: bad framing, over the size cap,
    or a redirect (never followed)."""


class _SinkFailed(Exception):
    """Carries the sink's own OSError (say, a full disk) past the network error handling."""


class Deadline:
    """A point on the monotonic clock by which an operation must be over."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.at = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def left(self, what: str) -> float:
        """Seconds left; raises :class:`DeadlineExceeded` (naming ``what``) when none are."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(f"{what}: not finished within {self.seconds:g} s")
        return left

    def within(self, seconds: Optional[float]) -> "Deadline":
        """The sooner of this deadline and ``seconds`` from now (``None``: this one)."""
        if seconds is None or self.remaining() <= seconds:
            return self
        return Deadline(seconds)


def recv_before(sock: socket.socket, size: int, deadline: Deadline, what: str) -> bytes:
    """``sock.recv(size)`` that waits at most for what is left of ``deadline``."""
    sock.settimeout(deadline.left(what))
    try:
        return sock.recv(size)
    except socket.timeout as exc:
        raise DeadlineExceeded(f"{what}: not finished within {deadline.seconds:g} s") from exc


class _DeadlineReader(io.RawIOBase):
    """The response side of a connection: every read waits at most for what is left."""

    def __init__(self, owner: "_DeadlineSocket"):
        super().__init__()
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        owner = self._owner
        owner.sock.settimeout(owner.deadline.left(owner.what))
        try:
            return owner.sock.recv_into(buffer)
        except socket.timeout as exc:
            raise DeadlineExceeded(f"{owner.what}: not finished within {owner.deadline.seconds:g} s") from exc

    def close(self) -> None:
        if not self.closed:
            self._owner.release()
        super().close()


class _DeadlineSocket:
    """What ``http.client`` sees as the socket: sends and reads bounded by the deadline.

    Like ``socket.makefile``, an open reader keeps the socket open: ``http.client`` closes the
    connection's socket while the response is still being read."""

    def __init__(self, sock: socket.socket, deadline: Deadline, what: str):
        self.sock, self.deadline, self.what = sock, deadline, what
        self._readers = 0
        self._close_asked = False

    def sendall(self, data) -> None:
        self.sock.settimeout(self.deadline.left(self.what))  # sendall's timeout is for the whole call
        try:
            self.sock.sendall(data)
        except socket.timeout as exc:
            raise DeadlineExceeded(f"{self.what}: not sent within {self.deadline.seconds:g} s") from exc

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"only binary reading is supported, got mode {mode!r}")
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def release(self) -> None:
        self._readers -= 1
        if self._close_asked and self._readers == 0:
            self.sock.close()

    def close(self) -> None:
        self._close_asked = True
        if self._readers == 0:
            self.sock.close()

    def __getattr__(self, name):
        return getattr(self.sock, name)


class _DeadlineConnection:
    """Mixed in before ``http.client.HTTP(S)Connection``: connect within the deadline, then
    hand ``http.client`` the deadline-bound socket (after the TLS wrap, for HTTPS)."""

    def __init__(self, host: str, port: Optional[int], deadline: Deadline, what: str):
        super().__init__(host, port)  # type: ignore[call-arg]
        self._deadline, self._what = deadline, what

    def connect(self) -> None:
        self.timeout = self._deadline.left(self._what)
        try:
            super().connect()  # type: ignore[misc]
        except socket.timeout as exc:
            raise DeadlineExceeded(f"{self._what}: no connection within {self._deadline.seconds:g} s") from exc
        self.sock = _DeadlineSocket(self.sock, self._deadline, self._what)


class _HTTP(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPS(_DeadlineConnection, http.client.HTTPSConnection):
    pass


@dataclass
class Answer:
    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""  # empty when the body went to ``sink``


def request(url: str, *, method: str = "GET", body: Optional[bytes] = None,
            headers: Optional[Mapping[str, str]] = None, deadline: Deadline, max_body: int,
            sink: Optional[BinaryIO] = None) -> Answer:
    """One HTTP exchange with ``url`` (http or https), all of it before ``deadline``.

    The body is returned in ``Answer.body`` (at most ``max_body`` bytes, else
    :class:`MalformedAnswer`), or written to ``sink`` chunk by chunk when one is given (then
    ``max_body`` does not apply: the deadline bounds it). Raises :class:`ConnectionFailed`,
    :class:`DeadlineExceeded` or :class:`MalformedAnswer`, nothing else from the network."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    what = f"{method} {url}"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from exc
    conn = (_HTTPS if parts.scheme == "https" else _HTTP)(parts.hostname, port, deadline, what)
    response = None
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        answer = Answer(response.status, response.reason,
                        {k.lower(): v for k, v in response.getheaders()})
        if 300 <= response.status < 400:
            raise MalformedAnswer(
                f"{what} answered a redirect (HTTP {response.status}) to {answer.headers.get('location')!r}; "
                f"redirects are not followed (a credential must not travel to another address): give that "
                f"address directly")
        expected = response.length  # None when chunked or ended by closing the connection
        if sink is None and expected is not None and expected > max_body:
            raise MalformedAnswer(f"{what}: the answer announces {expected} bytes, over the limit of "
                                  f"{max_body} bytes")
        received = 0
        data = bytearray()
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if sink is not None:
                try:
                    sink.write(chunk)
                except OSError as exc:
                    raise _SinkFailed() from exc
                continue
            if received > max_body:
                raise MalformedAnswer(f"{what}: the answer is over the limit of {max_body} bytes")
            data += chunk
        if expected is not None and received < expected:
            # http.client's read(n) returns b"" on an early close instead of raising
            raise ConnectionFailed(f"{what}: the connection closed after {received} of {expected} bytes")
        answer.body = bytes(data)
        return answer
    except HTTPFailure:
        raise
    except _SinkFailed as exc:
        raise exc.__cause__  # not the server's fault: the caller's own error, as it came
    except http.client.IncompleteRead as exc:
        raise ConnectionFailed(f"{what}: the connection broke mid-answer: {exc!r}") from exc
    except ConnectionError as exc:  # before HTTPException: RemoteDisconnected is both
        raise ConnectionFailed(f"{what}: {exc}") from exc
    except http.client.HTTPException as exc:
        raise MalformedAnswer(f"{what}: the answer is not valid HTTP: {exc!r}") from exc
    except OSError as exc:
        raise ConnectionFailed(f"{what}: {exc}") from exc
    finally:
        if response is not None:
            response.close()
        conn.close()
