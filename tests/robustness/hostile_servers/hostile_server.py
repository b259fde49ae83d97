"""Misbehaving HTTP / websocket servers on loopback, written byte by byte on raw sockets.

``HostileServer(routes, host, tls)`` listens on ``host`` (loopback only; HTTPS with an
``ssl.SSLContext``) in a thread; each connection
gets its request head parsed and is handed, with the socket, to the first route whose
``(method, path prefix)`` matches. A route writes whatever it likes: good answers, drips, endless
bodies, resets. Every loop a route runs is bounded in count and in time, and stops when the
server is closed, so a test never leaves a thread spinning.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

LOOPBACK = ("127.0.0.1", "127.0.0.2")
ROUTE_SECONDS = 20.0  # the longest any route keeps writing or holding a connection
MAX_ENDLESS_BYTES = 1 << 30  # an "endless" body still ends somewhere


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes
    server: "HostileServer" = field(repr=False)

    def ended(self) -> bool:
        return self.server.stopped.is_set()


Route = Callable[[socket.socket, Request], None]


class HostileServer:
    def __init__(self, routes: dict[tuple[str, str], Route], host: str = "127.0.0.1",
                 tls: ssl.SSLContext | None = None):
        if host not in LOOPBACK:
            raise ValueError(f"loopback addresses only, got {host}")
        self.routes, self.tls = routes, tls
        self.requests: list[Request] = []
        self.stopped = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0), backlog=32)
        self.host, self.port = host, self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(ROUTE_SECONDS)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            req = self._read_request(conn)
            if req is None:
                return
            self.requests.append(req)
            for (method, prefix), route in self.routes.items():
                if req.method == method and req.path.startswith(prefix):
                    route(conn, req)
                    break
            else:
                send_json(conn, 404, {"error": f"no route {req.method} {req.path}"})
        except OSError:  # ssl.SSLError included
            pass  # the client gave up or the server is closing: either is the point of the test
        finally:
            close_quietly(conn)

    def _read_request(self, conn: socket.socket) -> Request | None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk or len(head) > 1 << 20:
                return None
            head += chunk
        head, body = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        want = min(int(headers.get("content-length", 0)), 1 << 24)
        while len(body) < want:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return Request(method, path, headers, body, self)

    def close(self) -> None:
        self.stopped.set()
        close_quietly(self._listener)
        with self._lock:
            for conn in self._conns:
                close_quietly(conn)
        self._thread.join(timeout=5)


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def reset(conn: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN: the peer sees 'connection reset'."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def head(status: int, headers: dict | None = None, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send_body(conn: socket.socket, status: int, body: bytes, content_type: str = "application/json",
              extra: dict | None = None) -> None:
    conn.sendall(head(status, {"Content-Type": content_type, "Content-Length": len(body), "Connection": "close",
                               **(extra or {})}) + body)


def send_json(conn: socket.socket, status: int, payload) -> None:
    send_body(conn, status, json.dumps(payload).encode())


def drip(conn: socket.socket, req: Request, data: bytes, every: float = 0.05) -> None:
    """``data`` one byte at a time, then nothing until the route's time is up."""
    start = time.monotonic()
    for i in range(len(data)):
        if req.ended() or time.monotonic() - start > ROUTE_SECONDS:
            return
        conn.sendall(data[i:i + 1])
        time.sleep(every)
    hold(req, ROUTE_SECONDS - (time.monotonic() - start))


def hold(req: Request, seconds: float = ROUTE_SECONDS) -> None:
    """Keep the connection open and silent."""
    req.server.stopped.wait(max(0.0, seconds))


def endless(conn: socket.socket, req: Request, chunk: bytes, *, every: float = 0.0,
            frame: Callable[[bytes], bytes] = lambda b: b) -> None:
    """Write ``frame(chunk)`` again and again, bounded by MAX_ENDLESS_BYTES and ROUTE_SECONDS."""
    start, sent = time.monotonic(), 0
    data = frame(chunk)
    while not req.ended() and sent < MAX_ENDLESS_BYTES and time.monotonic() - start < ROUTE_SECONDS:
        conn.sendall(data)
        sent += len(data)
        if every:
            time.sleep(every)


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- websocket (server side)

def ws_accept(conn: socket.socket, req: Request) -> None:
    key = req.headers["sec-websocket-key"].encode()
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    conn.sendall(head(101, {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept},
                      reason="Switching Protocols"))


def ws_frame(payload: bytes, opcode: int = 0x1, fin: bool = True, masked: bool = False,
             declared: int | None = None) -> bytes:
    n = len(payload) if declared is None else declared
    first = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        length = bytes([mask_bit | n])
    elif n < 1 << 16:
        length = bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        length = bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if masked:
        key = b"\x01\x02\x03\x04"
        payload = key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first + length + payload


def ws_json(payload) -> bytes:
    return ws_frame(json.dumps(payload).encode())
