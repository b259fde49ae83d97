"""Messages between the worker pool (:mod:`.pool`) and its workers (:mod:`.pool_worker`).

They travel over a private socket pair (one per worker, handed to the worker as an inherited
file descriptor) through ``multiprocessing.connection.Connection``'s ``send_bytes`` / ``recv_bytes``
only: a message is one JSON header (``kind``, plain ``fields``, the names, shapes and dtypes of its
tensors) followed by one raw byte string per tensor. Nothing is pickled or unpickled, so a message
can carry nothing but data, whichever side wrote it.
"""
from __future__ import annotations

import json
from multiprocessing.connection import Connection
from typing import Any, Dict, Mapping, NamedTuple, Optional

import torch

# the dtypes a message may carry (names as torch spells them)
DTYPES = {name: getattr(torch, name) for name in
          ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")}


class WireError(RuntimeError):
    """A message that does not follow the format (a bug or a foreign writer on the socket)."""


class Message(NamedTuple):
    kind: str
    fields: Dict[str, Any]
    tensors: Dict[str, torch.Tensor]


def _dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in DTYPES:
        raise WireError(f"tensors of dtype {dtype} cannot be sent; expected one of {sorted(DTYPES)}")
    return name


def send(conn: Connection, kind: str, fields: Optional[Mapping[str, Any]] = None,
         tensors: Optional[Mapping[str, Optional[torch.Tensor]]] = None) -> None:
    """Send one message; ``None`` tensors are left out (the receiver sees the name missing)."""
    present = {name: t.detach() for name, t in (tensors or {}).items() if t is not None}
    header = {"kind": kind, "fields": dict(fields or {}),
              "tensors": [[name, list(t.shape), _dtype_name(t.dtype)] for name, t in present.items()]}
    conn.send_bytes(json.dumps(header).encode())
    for t in present.values():
        flat = t.cpu().contiguous().reshape(-1)
        conn.send_bytes(flat.view(torch.uint8).numpy() if flat.numel() else b"")


def recv(conn: Connection) -> Message:
    """Receive one message (blocks; ``EOFError`` when the other side has gone)."""
    try:
        header = json.loads(conn.recv_bytes().decode())
        kind, fields, specs = header["kind"], header["fields"], header["tensors"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"malformed message header: {exc}") from None
    if not isinstance(kind, str) or not isinstance(fields, dict) or not isinstance(specs, list):
        raise WireError(f"malformed message header: {header!r:.200}")
    tensors = {}
    for spec in specs:
        try:
            name, shape, dtype_name = spec
            dtype = DTYPES[dtype_name]
            shape = [int(s) for s in shape]
        except (ValueError, KeyError, TypeError):
            raise WireError(f"malformed tensor description {spec!r:.200}") from None
        if any(s < 0 for s in shape):
            raise WireError(f"tensor {name!r}: negative size in {shape}")
        data = conn.recv_bytes()
        numel = 1
        for s in shape:
            numel *= s
        expected = numel * torch.empty((), dtype=dtype).element_size()
        if len(data) != expected:
            raise WireError(f"tensor {name!r}: {len(data)} bytes for shape {shape} {dtype_name} ({expected} expected)")
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
    return Message(kind, fields, tensors)
