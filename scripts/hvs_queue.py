#!/usr/bin/env python3
"""Queue a ComfyUI workflow headlessly, follow its progress and download its outputs.

    python scripts/hvs_queue.py WORKFLOW.json [--server http://127.0.0.1:8188] [--out DIR]

WORKFLOW.json may be in API format (``{"<id>": {"class_type": ..., "inputs": {...}}}``, queued
as is) or in UI format (what the front end saves: ``{"nodes": [...], "links": [...]}``), which
is converted to API format with the server's ``/object_info`` (see ``ui_to_api``).

Progress goes to stderr, one line per event; the paths of the downloaded outputs go to stdout,
one per line. Exit status: 0 success, 1 execution error, 2 prompt rejected by validation or a
workflow that cannot be converted, 3 interrupted, 4 server unreachable / timeout.

Standard library only: a tiny RFC 6455 websocket client follows ``/ws``; if the websocket
cannot be opened, the client falls back to polling ``/history/<prompt_id>``.
This file is also imported by the test harness (``tests/comfyui/server.py``).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "ComfyClient", "ComfyError", "PromptRejected", "PromptFailed", "WorkflowError",
    "PromptResult", "WebSocket", "ui_to_api", "is_api_format", "format_node_errors", "main",
]

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_INTERRUPTED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

# --------------------------------------------------------------------------- errors


class ComfyError(Exception):
    """Base class of the client's errors."""

    exit_code = EXIT_UNREACHABLE


class WorkflowError(ComfyError):
    """The workflow file cannot be read or converted to API format."""

    exit_code = EXIT_REJECTED


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: validation failed (see ``node_errors``)."""

    exit_code = EXIT_REJECTED

    def __init__(self, error: Any, node_errors: dict | None):
        self.error = error
        self.node_errors = node_errors or {}
        super().__init__(format_node_errors(error, self.node_errors))


class PromptFailed(ComfyError):
    """The prompt was queued but failed (``execution_error``) or was interrupted."""

    def __init__(self, result: "PromptResult"):
        self.result = result
        self.exit_code = EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_FAILED
        super().__init__(result.error_text())


# --------------------------------------------------------------------------- websocket


class WebSocket:
    """Minimal blocking websocket client (RFC 6455) over plain TCP: enough for ComfyUI's
    ``/ws`` and for the Chrome DevTools Protocol. Text frames are returned as ``str``,
    binary frames as ``bytes``; pings are answered, fragmented messages reassembled."""

    def __init__(self, url: str, timeout: float = 30.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ws":
            raise ValueError(f"only ws:// URLs are supported, got {url!r}")
        host, port = u.hostname or "127.0.0.1", u.port or 80
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"websocket handshake refused: {status.decode(errors='replace')}")
        self.closed = False

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                self.closed = True
                raise ConnectionError("websocket closed by peer")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self, timeout: float | None = None) -> str | bytes:
        """Next complete message; raises ``socket.timeout`` after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        parts: list[bytes] = []
        first_op = None
        while True:
            b0, b1 = self._read_exact(2)
            fin, op = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if b1 & 0x80 else None
            data = self._read_exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if op == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if op == 0xA:  # pong
                continue
            if op == 0x8:  # close
                self.closed = True
                raise ConnectionError("websocket closed by peer")
            if op in (0x1, 0x2):
                first_op, parts = op, [data]
            else:  # continuation
                parts.append(data)
            if fin:
                msg = b"".join(parts)
                return msg.decode() if first_op == 0x1 else msg

    def close(self) -> None:
        if not self.closed:
            try:
                self._send_frame(0x8, struct.pack(">H", 1000))
            except OSError:
                pass
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- UI -> API

VIRTUAL_NODE_TYPES = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize", "increment-wrap"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MODE_MUTED, MODE_BYPASS = 2, 4


def is_api_format(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def _input_spec(object_info_entry: dict) -> list[tuple[str, list, str]]:
    """[(name, spec, section)] in widget-creation order (required first, then optional)."""
    inp = object_info_entry.get("input", {}) or {}
    order = object_info_entry.get("input_order")  # newer servers give the order explicitly
    specs: list[tuple[str, list, str]] = []
    for section in ("required", "optional"):
        sec = inp.get(section) or {}
        names = (order or {}).get(section) or list(sec)
        for name in names:
            if name in sec:
                spec = sec[name]
                specs.append((name, list(spec) if isinstance(spec, (list, tuple)) else [spec], section))
    return specs


def _has_control(name: str, spec: list) -> bool:
    """Whether the front end puts a control_after_generate combo after this widget."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate")) or (spec[0] == "INT" and name in ("seed", "noise_seed"))


def _widget_layouts(specs: list[tuple[str, list, str]]):
    """Yield candidate widget layouts, most likely first.

    A layout is a list of (input_name or None, kind); ``kind`` is "value" (an API input),
    "control" (the control_after_generate combo after a seed input), "filter" (the filter text
    of a combo with control_after_generate) or "button" (the image-upload button, which the
    old front end adds after the required inputs). Front ends differ in whether forceInput
    widgets, control combos and upload buttons occupy a widgets_values slot, so every
    combination is offered and the caller picks the one that matches the saved values."""
    import itertools

    for force_slot, control_slot, button_slot in itertools.product((True, False), repeat=3):
        layout: list[tuple[str | None, str]] = []
        want_button = False
        for idx, (name, spec, section) in enumerate(specs):
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            kind = "COMBO" if isinstance(typ, list) else typ
            if kind == "IMAGEUPLOAD":
                if button_slot:
                    layout.append((None, "button"))
            elif kind in WIDGET_TYPES and not (opts.get("forceInput") and not force_slot):
                layout.append((name, "value"))
                if _has_control(name, spec) and control_slot:
                    layout.append((None, "control"))
                    if kind == "COMBO":
                        layout.append((None, "filter"))
                if kind == "COMBO" and opts.get("image_upload"):
                    want_button = True
            last_required = section == "required" and (idx + 1 == len(specs) or specs[idx + 1][2] != "required")
            if last_required and want_button and button_slot:
                layout.append((None, "button"))
                want_button = False
        yield layout


def _map_widgets(class_type: str, values: Any, specs: list[tuple[str, list, str]]) -> dict[str, Any]:
    """widgets_values of one node -> {input name: value}."""
    spec_names = {n for n, _, _ in specs}
    if isinstance(values, dict):  # some front ends / packs save a dict keyed by widget name
        return {k: v for k, v in values.items() if k in spec_names}
    values = list(values or [])
    layouts = list(_widget_layouts(specs))
    controlled = {n for n, spec, _ in specs if _has_control(n, spec)}

    def consistent(layout) -> bool:
        """Control slots hold control values, and a layout without them does not read a saved
        control value (the slot after a seed) as the next input's value."""
        for i, (name, kind) in enumerate(layout[: len(values)]):
            if kind == "control" and values[i] not in CONTROL_VALUES:
                return False
            if kind == "value" and name in controlled and (i + 1 >= len(layout) or layout[i + 1][1] != "control") \
                    and i + 1 < len(values) and values[i + 1] in CONTROL_VALUES:
                return False
        return True

    ok = [lay for lay in layouts if consistent(lay)] or layouts
    chosen = next((lay for lay in ok if len(lay) == len(values)), None)
    if chosen is None:  # extra trailing values (front-end-only widgets): longest layout that fits
        shorter = [lay for lay in ok if len(lay) < len(values)]
        # else fewer values than widgets: saved before trailing widgets were added (they get defaults)
        chosen = max(shorter, key=len) if shorter else min(ok, key=len)
    defaults = {n: spec[1]["default"] for n, spec, _ in specs if len(spec) > 1 and isinstance(spec[1], dict)
                and "default" in spec[1]}
    out: dict[str, Any] = {}
    for i, (name, kind) in enumerate(chosen):
        if kind == "value" and name is not None:
            if i < len(values):
                out[name] = values[i]
            elif name in defaults:
                out[name] = defaults[name]
    return out


def _links_table(workflow: dict) -> dict[int, tuple]:
    table = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            table[int(link["id"])] = (link["origin_id"], link["origin_slot"], link["target_id"],
                                      link["target_slot"], link.get("type"))
        elif link:
            lid, o_id, o_slot, t_id, t_slot = link[:5]
            table[int(lid)] = (o_id, o_slot, t_id, t_slot, link[5] if len(link) > 5 else None)
    return table


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API-format prompt, as the front end's
    ``graphToPrompt`` does: virtual nodes (Reroute, PrimitiveNode, Note) are resolved and
    dropped, muted (mode 2) and bypassed (mode 4) nodes are dropped, links through a bypassed
    node are routed to its first input of the same type, PrimitiveNode values are written into
    the widget they drive, and widgets_values are mapped to input names with the node
    definitions from ``/object_info``. Seed values are used as saved (no re-randomising)."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise WorkflowError("not a UI-format workflow (no 'nodes' list)")
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported by this converter")
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links = _links_table(workflow)

    missing = sorted({n.get("type") for n in nodes.values()
                      if n.get("type") not in object_info and n.get("type") not in VIRTUAL_NODE_TYPES
                      and n.get("mode", 0) not in (MODE_MUTED, MODE_BYPASS)})
    if missing:
        raise WorkflowError("missing node types (not known to the server): " + ", ".join(missing))

    def input_link(node: dict, slot: int):
        inputs = node.get("inputs") or []
        if slot >= len(inputs):
            return None
        lid = inputs[slot].get("link")
        return links.get(int(lid)) if lid is not None else None

    def resolve(link, want_type):
        """Follow a link back through Reroutes and bypassed nodes.
        Returns ("link", origin_id, slot), ("value", v) for a PrimitiveNode, or None."""
        seen = set()
        while link is not None:
            o_id, o_slot = int(link[0]), int(link[1])
            if (o_id, o_slot) in seen:
                return None
            seen.add((o_id, o_slot))
            parent = nodes.get(o_id)
            if parent is None:
                return None
            ptype = parent.get("type")
            if ptype == "PrimitiveNode":
                vals = parent.get("widgets_values") or []
                return ("value", vals[0]) if vals else None
            if ptype == "Reroute":
                link = input_link(parent, 0)
                continue
            if ptype in VIRTUAL_NODE_TYPES:
                return None
            if parent.get("mode", 0) == MODE_BYPASS:
                p_inputs = parent.get("inputs") or []
                order = [o_slot] + list(range(len(p_inputs)))
                nxt = None
                for s in order:
                    if s < len(p_inputs) and p_inputs[s].get("type") == want_type:
                        nxt = input_link(parent, s)
                        break
                link = nxt
                continue
            if parent.get("mode", 0) == MODE_MUTED:
                return None
            return ("link", str(o_id), o_slot)
        return None

    prompt: dict[str, dict] = {}
    for nid in sorted(nodes):
        node = nodes[nid]
        ctype = node.get("type")
        if ctype in VIRTUAL_NODE_TYPES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        specs = _input_spec(object_info[ctype])
        inputs = _map_widgets(ctype, node.get("widgets_values"), specs)
        for slot, inp in enumerate(node.get("inputs") or []):
            if inp.get("link") is None:
                continue
            r = resolve(input_link(node, slot), inp.get("type"))
            name = inp.get("name")
            if (inp.get("widget") or {}).get("name"):
                name = inp["widget"]["name"]
            if r is None:
                continue
            if r[0] == "value":
                inputs[name] = r[1]
            else:
                inputs[name] = [r[1], r[2]]
        entry = {"class_type": ctype, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(nid)] = entry

    # links that ended on dropped (muted) nodes are removed, as the front end does
    for entry in prompt.values():
        for k in [k for k, v in entry["inputs"].items()
                  if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] not in prompt]:
            del entry["inputs"][k]
    return prompt


# --------------------------------------------------------------------------- client


@dataclass
class PromptResult:
    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    history: dict = field(default_factory=dict)
    error: dict | None = None
    events: list = field(default_factory=list)

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {}) or {}

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def files(self) -> list[dict]:
        """Every saved file in the outputs: dicts with filename, subfolder, type, node, kind."""
        out = []
        for node_id, node_out in self.outputs.items():
            for kind in ("images", "gifs", "videos", "audio", "files"):
                for item in node_out.get(kind) or []:
                    if isinstance(item, dict) and "filename" in item:
                        out.append({**item, "node": node_id, "kind": kind})
        return out

    def error_text(self) -> str:
        if self.status == "interrupted":
            return f"prompt {self.prompt_id} was interrupted"
        e = self.error or {}
        if not e:
            return f"prompt {self.prompt_id} failed (no error details)"
        return (f"node {e.get('node_id')} ({e.get('node_type')}) failed: "
                f"{e.get('exception_type', 'Error')}: {str(e.get('exception_message', '')).strip()}")


def format_node_errors(error: Any, node_errors: dict) -> str:
    lines = []
    if isinstance(error, dict):
        msg = error.get("message", "")
        det = error.get("details", "")
        lines.append(f"{msg}{': ' + det if det else ''}".strip())
    elif error:
        lines.append(str(error))
    for nid, ne in (node_errors or {}).items():
        for err in ne.get("errors", []):
            det = err.get("details", "")
            lines.append(f"node {nid} ({ne.get('class_type', '?')}): {err.get('message', '')}"
                         f"{': ' + det if det else ''}")
    return "\n".join(lines) or "prompt rejected"


class ComfyClient:
    """HTTP + websocket client for one ComfyUI server (base URL like http://127.0.0.1:8188)."""

    def __init__(self, server: str = "http://127.0.0.1:8188", timeout: float = 30.0):
        self.base = server.rstrip("/")
        if "://" not in self.base:
            self.base = "http://" + self.base
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self._object_info: dict | None = None

    # -- plain HTTP
    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        """Returns (status, bytes). Raises ComfyError when the server cannot be reached."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ComfyError(f"cannot reach ComfyUI at {self.base}: {e}") from e

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ComfyError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = self.get_json("/object_info", timeout=max(self.timeout, 120))
        return self._object_info

    def interrupt(self) -> None:
        status, body = self.request("POST", "/interrupt", {})
        if status != 200:
            raise ComfyError(f"POST /interrupt: HTTP {status}: {body[:300]!r}")

    def history(self, prompt_id: str) -> dict | None:
        data = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
        return data.get(prompt_id)

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        status, body = self.request("GET", f"/view?{q}", timeout=max(self.timeout, 120))
        if status != 200:
            raise ComfyError(f"GET /view?{q}: HTTP {status}")
        return body

    # -- prompts
    def to_api(self, workflow: dict) -> tuple[dict, dict | None]:
        """(api_prompt, ui_workflow_or_None) for a workflow in either format."""
        if isinstance(workflow, dict) and is_api_format(workflow.get("prompt")):
            return workflow["prompt"], workflow.get("workflow")
        if is_api_format(workflow):
            return workflow, None
        if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
            return ui_to_api(workflow, self.object_info()), workflow
        raise WorkflowError("workflow is neither API format nor UI format")

    def submit(self, prompt: dict, ui_workflow: dict | None = None) -> str:
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if ui_workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": ui_workflow}}
        status, raw = self.request("POST", "/prompt", body)
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"error": raw.decode(errors="replace")}
        if status != 200:
            raise PromptRejected(data.get("error"), data.get("node_errors"))
        if data.get("node_errors"):
            # queued anyway (some outputs valid); keep going but report
            pass
        return data["prompt_id"]

    def run(self, workflow: dict, *, timeout: float = 600.0,
            on_event: Callable[[str, dict], None] | None = None, check: bool = False) -> PromptResult:
        """Queue a workflow (either format), wait until it finishes, return a PromptResult.
        Raises PromptRejected on validation errors; with ``check`` also PromptFailed."""
        prompt, ui = self.to_api(workflow)
        ws = None
        try:
            ws = WebSocket(self.base.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}",
                           timeout=self.timeout)
        except (OSError, ConnectionError, ValueError):
            ws = None  # fall back to polling
        try:
            prompt_id = self.submit(prompt, ui)
            result = self._wait(prompt_id, ws, timeout, on_event)
        finally:
            if ws is not None:
                ws.close()
        if check and not result.ok:
            raise PromptFailed(result)
        return result

    def _wait(self, prompt_id: str, ws: WebSocket | None, timeout: float,
              on_event: Callable[[str, dict], None] | None) -> PromptResult:
        deadline = time.monotonic() + timeout
        events: list = []
        error = None
        status = None
        while time.monotonic() < deadline and status is None:
            if ws is not None:
                try:
                    msg = ws.recv(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                except socket.timeout:
                    msg = None
                except (OSError, ConnectionError):
                    ws = None
                    continue
                if msg is None:
                    h = self.history(prompt_id)  # a missed event must not hang us
                    if h is not None:
                        status = _status_from_history(h)
                    continue
                if isinstance(msg, bytes):
                    continue  # binary preview frames
                try:
                    m = json.loads(msg)
                except ValueError:
                    continue
                etype, data = m.get("type"), m.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if etype in ("status",) and "prompt_id" not in data:
                    continue
                events.append((etype, data))
                if on_event:
                    on_event(etype, data)
                if etype == "execution_error":
                    error = data
                    status = "error"
                elif etype == "execution_interrupted":
                    status = "interrupted"
                elif etype == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    status = "done"
                elif etype == "execution_success":
                    status = "done"
            else:
                h = self.history(prompt_id)
                if h is not None:
                    status = _status_from_history(h)
                else:
                    time.sleep(0.25)
        if status is None:
            raise ComfyError(f"timed out after {timeout:.0f}s waiting for prompt {prompt_id}")
        # the history entry is written right after the last event; give it a moment
        hist = None
        for _ in range(100):
            hist = self.history(prompt_id)
            if hist is not None:
                break
            time.sleep(0.1)
        hist = hist or {}
        final = status
        if status in ("done", "success", "error"):
            hs = _status_from_history(hist) if hist else None
            if error is None:
                error = _error_from_history(hist)
            final = "error" if (error is not None or hs == "error") else "success"
            if hs == "interrupted":
                final = "interrupted"
        return PromptResult(prompt_id=prompt_id, status=final, history=hist, error=error, events=events)


def _status_from_history(h: dict) -> str:
    st = h.get("status") or {}
    for ev, _ in [tuple(m) for m in st.get("messages", []) if isinstance(m, (list, tuple)) and len(m) == 2]:
        if ev == "execution_interrupted":
            return "interrupted"
        if ev == "execution_error":
            return "error"
    if st.get("status_str") == "error":
        return "error"
    return "success"


def _error_from_history(h: dict) -> dict | None:
    for m in (h.get("status") or {}).get("messages", []):
        if isinstance(m, (list, tuple)) and len(m) == 2 and m[0] == "execution_error":
            return m[1]
    return None


# --------------------------------------------------------------------------- CLI


def _progress_printer(object_info: dict | None, prompt: dict):
    def title(node_id):
        entry = prompt.get(str(node_id), {})
        return f"{node_id} {entry.get('class_type', '')}".strip()

    def on_event(etype: str, data: dict) -> None:
        if etype == "execution_start":
            line = f"started prompt {data.get('prompt_id')}"
        elif etype == "execution_cached":
            nodes_ = data.get("nodes") or []
            if not nodes_:
                return
            line = "cached: " + ", ".join(title(n) for n in nodes_)
        elif etype == "executing":
            if data.get("node") is None:
                return
            line = f"executing node {title(data['node'])}"
        elif etype == "progress":
            line = f"progress {data.get('value')}/{data.get('max')} (node {data.get('node')})"
        elif etype == "executed":
            line = f"executed node {title(data.get('node'))}"
        elif etype == "execution_error":
            line = f"error in node {title(data.get('node_id'))}"
        elif etype == "execution_interrupted":
            line = "interrupted"
        else:
            return
        print(line, file=sys.stderr, flush=True)
    return on_event


def _safe_rel(subfolder: str, filename: str) -> str:
    parts = [p for p in (subfolder or "").replace("\\", "/").split("/") if p not in ("", ".", "..")]
    parts.append(os.path.basename(filename))
    return os.path.join(*parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", help="workflow JSON file (API or UI format)")
    ap.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"))
    ap.add_argument("--out", default="outputs", help="folder for the downloaded outputs")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the prompt")
    ap.add_argument("--no-download", action="store_true", help="print the outputs, do not download")
    ap.add_argument("--api-out", help="also write the API-format prompt that was queued to this file")
    args = ap.parse_args(argv)

    try:
        with open(args.workflow, encoding="utf-8") as f:
            workflow = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: cannot read workflow {args.workflow}: {e}", file=sys.stderr)
        return EXIT_REJECTED

    client = ComfyClient(args.server)
    try:
        prompt, _ = client.to_api(workflow)
        if args.api_out:
            with open(args.api_out, "w", encoding="utf-8") as f:
                json.dump(prompt, f, indent=2)
        result = client.run(workflow, timeout=args.timeout,
                            on_event=_progress_printer(None, prompt))
    except PromptRejected as e:
        print(f"error: prompt rejected by the server:\n{e}", file=sys.stderr)
        return e.exit_code
    except ComfyError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code

    if not result.ok:
        print(f"error: {result.error_text()}", file=sys.stderr)
        return EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_FAILED

    files = result.files()
    if not files:
        print("done: the prompt produced no files", file=sys.stderr)
    for item in files:
        rel = _safe_rel(item.get("subfolder", ""), item["filename"])
        if args.no_download:
            print(rel)
            continue
        dest = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        try:
            data = client.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
        except ComfyError as e:
            print(f"error: download failed: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE
        with open(dest, "wb") as f:
            f.write(data)
        print(dest, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
