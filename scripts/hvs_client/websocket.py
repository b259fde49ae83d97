"""Minimal blocking websocket client (RFC 6455) over plain TCP: enough for ComfyUI's ``/ws`` and
for the Chrome DevTools Protocol.

Text frames are returned as ``str``, binary frames as ``bytes``; pings are answered, fragmented
messages reassembled. A server that breaks the protocol (masked or reserved-bit frames, unknown
opcodes, a message over ``max_message_bytes``, bad UTF-8) raises
:class:`WebSocketProtocolError`; frames are parsed only once they are complete, so a ``recv``
that times out mid-frame loses nothing and the next one carries on.
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import urllib.parse

from hyvideo_core.bounded_http import Deadline, DeadlineExceeded, recv_before

__all__ = ["WebSocket", "WebSocketProtocolError", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 16 << 20  # ComfyUI's largest messages are preview images of a few hundred KB
MAX_HANDSHAKE_BYTES = 64 << 10
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketProtocolError(Exception):
    """The server broke the websocket protocol or sent a message over the size cap."""


def _masked(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class WebSocket:
    """``WebSocket(url, timeout)``: the handshake must finish within ``timeout`` seconds, which
    is also each ``send``'s limit; ``recv(timeout)`` waits at most ``timeout`` for a message."""

    def __init__(self, url: str, timeout: float = 30.0, max_message_bytes: int = MAX_MESSAGE_BYTES):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ws":
            raise ValueError(f"only ws:// URLs are supported, got {url!r}")
        host, port = u.hostname or "127.0.0.1", u.port or 80
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.closed = True
        self._buf = bytearray()
        self._message: bytearray | None = None  # a fragmented message being reassembled
        self._message_op = _OP_TEXT
        deadline = Deadline(timeout)
        self.sock = socket.create_connection((host, port), timeout=deadline.left("websocket connect"))
        try:
            key = base64.b64encode(os.urandom(16))
            self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                              % (path.encode(), host.encode(), port, key))
            self._handshake(key, deadline)
        except BaseException:
            self.sock.close()
            raise
        self.closed = False

    def _handshake(self, key: bytes, deadline: Deadline) -> None:
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > MAX_HANDSHAKE_BYTES:
                raise WebSocketProtocolError(f"websocket handshake: no end of headers in {MAX_HANDSHAKE_BYTES} bytes")
            try:
                chunk = recv_before(self.sock, 4096, deadline, "websocket handshake")
            except DeadlineExceeded as exc:
                raise socket.timeout(str(exc)) from exc
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            self._buf += chunk
        end = self._buf.index(b"\r\n\r\n")
        head = bytes(self._buf[:end])
        del self._buf[:end + 4]
        lines = head.split(b"\r\n")
        if b" 101 " not in lines[0] + b" ":
            raise ConnectionError(f"websocket handshake refused: {lines[0][:200].decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if headers.get(b"sec-websocket-accept") != accept:
            raise WebSocketProtocolError("websocket handshake: the server's Sec-WebSocket-Accept does not match")

    def _send_frame(self, opcode: int, payload: bytes, timeout: float | None = None) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        key = os.urandom(4)
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        self.sock.sendall(header + key + _masked(payload, key))

    def send(self, text: str) -> None:
        self._send_frame(_OP_TEXT, text.encode())

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        """(fin, opcode, payload) of the first frame in the buffer, or None while incomplete."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise WebSocketProtocolError("websocket frame with reserved bits set (no extension was agreed)")
        if b1 & 0x80:
            raise WebSocketProtocolError("masked websocket frame from the server (RFC 6455 forbids it)")
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = struct.unpack_from(">H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = struct.unpack_from(">Q", buf, 2)[0], 10
        if n > self.max_message_bytes:
            raise WebSocketProtocolError(f"websocket frame of {n} bytes, over the limit of {self.max_message_bytes}")
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _fill(self, deadline: Deadline | None) -> None:
        if deadline is None:
            self.sock.settimeout(None)
            chunk = self.sock.recv(1 << 16)
        else:
            try:
                chunk = recv_before(self.sock, 1 << 16, deadline, "websocket receive")
            except DeadlineExceeded as exc:
                raise socket.timeout(str(exc)) from exc
        if not chunk:
            self.closed = True
            raise ConnectionError("websocket closed by peer")
        self._buf += chunk

    def recv(self, timeout: float | None = None) -> str | bytes:
        """Next complete message; raises ``socket.timeout`` after ``timeout`` seconds."""
        deadline = None if timeout is None else Deadline(timeout)
        while True:
            if deadline is not None and deadline.expired():  # a flood of frames must not stretch the wait
                raise socket.timeout(f"websocket receive: no message within {deadline.seconds:g} s")
            frame = self._next_frame()
            if frame is None:
                self._fill(deadline)
                continue
            fin, op, payload = frame
            if op == _OP_PING:  # within the caller's wait: a ping flood must not stretch it
                self._send_frame(_OP_PONG, payload, None if deadline is None else max(deadline.remaining(), 0.001))
                continue
            if op == _OP_PONG:
                continue
            if op == _OP_CLOSE:
                self.closed = True
                raise ConnectionError("websocket closed by peer")
            if op in (_OP_TEXT, _OP_BINARY):
                if self._message is not None:
                    raise WebSocketProtocolError("websocket message started before the previous one ended")
                self._message, self._message_op = bytearray(), op
            elif op != _OP_CONT or self._message is None:
                raise WebSocketProtocolError(f"unexpected websocket opcode {op:#x}")
            if len(self._message) + len(payload) > self.max_message_bytes:
                raise WebSocketProtocolError(f"websocket message over the limit of {self.max_message_bytes} bytes")
            self._message += payload
            if fin:
                message, self._message = bytes(self._message), None
                if self._message_op == _OP_BINARY:
                    return message
                try:
                    return message.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WebSocketProtocolError(f"websocket text message is not UTF-8: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            try:
                self._send_frame(_OP_CLOSE, struct.pack(">H", 1000))
            except OSError:
                pass
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
