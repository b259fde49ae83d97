"""HTTP + websocket client for one ComfyUI server: queue a prompt, follow it, fetch its outputs.

Every request is bounded as a whole (connect, send, every read) by ``timeout`` and, when the
client has one, by its overall ``deadline``; answers are capped in size (``/view`` can stream
to a file instead) and checked for the shapes ComfyUI sends, so a slow, broken or hostile server
ends in a :class:`ComfyError` (unreachable / too slow) or :class:`BadServerAnswer` (answered
something ComfyUI never sends), never in a hang, a traceback or unbounded memory.
"""
from __future__ import annotations

import collections
import json
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

from hyvideo_core import bounded_http
from hyvideo_core.bounded_http import ConnectionFailed, Deadline, DeadlineExceeded, MalformedAnswer

from .errors import BadServerAnswer, ComfyError, PromptFailed, PromptRejected, WorkflowError
from .websocket import WebSocket, WebSocketProtocolError
from .workflow_convert import MalformedNodeInfo, is_api_format, ui_to_api

__all__ = ["ComfyClient", "PromptResult", "MAX_JSON_BYTES", "MAX_OBJECT_INFO_BYTES", "MAX_VIEW_BYTES",
           "MAX_EVENTS"]

MAX_JSON_BYTES = 16 << 20  # any JSON answer but /object_info
MAX_OBJECT_INFO_BYTES = 32 << 20  # /object_info of a large install with many packs and models is ~10 MB
MAX_VIEW_BYTES = 256 << 20  # an output file fetched into memory; larger ones want view(..., sink=file)
MAX_EVENTS = 10_000  # PromptResult.events keeps the latest ones
GATEWAY_DOWN = (502, 503, 504)  # a proxy in front of a ComfyUI that is not running
EXECUTION_EVENTS = {"status", "execution_start", "execution_cached", "executing", "progress", "executed",
                    "execution_error", "execution_interrupted", "execution_success"}


def _expect(value: Any, kinds: type | tuple, what: str) -> Any:
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise BadServerAnswer(f"{what}: expected {names}, found {type(value).__name__} {str(value)[:100]!r}")
    return value


def _checked_history(entry: Any, what: str) -> dict:
    """A /history entry with the parts the client reads shaped as ComfyUI makes them."""
    _expect(entry, dict, what)
    status = _expect(entry.get("status") or {}, dict, f"{what} status")
    for message in _expect(status.get("messages") or [], list, f"{what} status messages"):
        if isinstance(message, (list, tuple)) and len(message) == 2 and message[0] == "execution_error":
            _expect(message[1], dict, f"{what} execution_error")
    for node_id, node_out in _expect(entry.get("outputs") or {}, dict, f"{what} outputs").items():
        _expect(node_out, dict, f"{what} outputs of node {node_id}")
        for kind in PromptResult.FILE_KINDS:
            for item in _expect(node_out.get(kind) or [], list, f"{what} {kind} of node {node_id}"):
                if isinstance(item, dict) and "filename" in item:
                    for key in ("filename", "subfolder", "type"):
                        _expect(item.get(key, ""), str, f"{what} {kind} {key} of node {node_id}")
    return entry


@dataclass
class PromptResult:
    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    history: dict = field(default_factory=dict)
    error: dict | None = None
    events: list = field(default_factory=list)

    FILE_KINDS = ("images", "gifs", "videos", "audio", "files")

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
            for kind in self.FILE_KINDS:
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


class ComfyClient:
    """HTTP + websocket client for one ComfyUI server (base URL like http://127.0.0.1:8188).

    ``timeout``: seconds each request may take in all; ``deadline``: a
    :class:`~hyvideo_core.bounded_http.Deadline` that bounds everything this client does."""

    def __init__(self, server: str = "http://127.0.0.1:8188", timeout: float = 30.0,
                 deadline: Deadline | None = None):
        self.base = server.rstrip("/")
        if "://" not in self.base:
            self.base = "http://" + self.base
        self.timeout = timeout
        self.deadline = deadline
        self.client_id = uuid.uuid4().hex
        self._object_info: dict | None = None

    def _limit(self, seconds: float) -> Deadline:
        return Deadline(seconds) if self.deadline is None else self.deadline.within(seconds)

    # -- plain HTTP
    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None, *,
                max_body: int = MAX_JSON_BYTES, sink: BinaryIO | None = None) -> tuple[int, bytes]:
        """Returns (status, bytes); with ``sink`` the body is written there instead.
        Raises ComfyError when the server cannot be reached or does not answer in time,
        BadServerAnswer when the answer is not usable HTTP or over ``max_body``."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            answer = bounded_http.request(
                self.base + path, method=method, body=data, deadline=self._limit(timeout or self.timeout),
                headers={"Content-Type": "application/json"} if data is not None else {},
                max_body=max_body, sink=sink)
        except DeadlineExceeded as exc:
            raise ComfyError(f"ComfyUI gave no complete answer in time: {exc}") from exc
        except ConnectionFailed as exc:
            raise ComfyError(f"cannot reach ComfyUI: {exc}") from exc
        except ValueError as exc:  # not a usable http:// address
            raise ComfyError(f"cannot reach ComfyUI at {self.base}: {exc}") from exc
        except MalformedAnswer as exc:
            raise BadServerAnswer(f"ComfyUI answered something unusable: {exc}") from exc
        return answer.status, answer.body

    def _json(self, raw: bytes | str, what: str) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BadServerAnswer(f"{what}: ComfyUI at {self.base} answered something that is not JSON: "
                                  f"{raw[:120]!r}") from exc

    def _check_status(self, status: int, body: bytes, what: str) -> None:
        if status in GATEWAY_DOWN:
            raise ComfyError(f"{what}: HTTP {status} from the gateway in front of ComfyUI at {self.base}")
        if status != 200:
            raise BadServerAnswer(f"{what}: HTTP {status}" + (f": {body[:300]!r}" if body else ""))

    def get_json(self, path: str, timeout: float | None = None, *, max_body: int = MAX_JSON_BYTES) -> Any:
        status, body = self.request("GET", path, timeout=timeout, max_body=max_body)
        self._check_status(status, body, f"GET {path}")
        return self._json(body, f"GET {path}")

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            info = self.get_json("/object_info", timeout=max(self.timeout, 120), max_body=MAX_OBJECT_INFO_BYTES)
            self._object_info = _expect(info, dict, "GET /object_info")
        return self._object_info

    def interrupt(self) -> None:
        status, body = self.request("POST", "/interrupt", {})
        self._check_status(status, body, "POST /interrupt")

    def history(self, prompt_id: str, timeout: float | None = None) -> dict | None:
        what = f"GET /history/{prompt_id}"
        data = _expect(self.get_json(f"/history/{urllib.parse.quote(prompt_id)}", timeout=timeout), dict, what)
        entry = data.get(prompt_id)
        return None if entry is None else _checked_history(entry, what)

    def view(self, filename: str, subfolder: str = "", type: str = "output", *,
             sink: BinaryIO | None = None, timeout: float | None = None) -> bytes:
        """One output file's bytes, or b"" after streaming them into ``sink`` (no size cap then)."""
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        status, body = self.request("GET", f"/view?{q}", timeout=timeout or max(self.timeout, 120),
                                    max_body=MAX_VIEW_BYTES, sink=sink)
        self._check_status(status, body, f"GET /view?{q}")
        return body

    # -- prompts
    def to_api(self, workflow: dict) -> tuple[dict, dict | None]:
        """(api_prompt, ui_workflow_or_None) for a workflow in either format."""
        if isinstance(workflow, dict) and is_api_format(workflow.get("prompt")):
            return workflow["prompt"], workflow.get("workflow")
        if is_api_format(workflow):
            return workflow, None
        if not (isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list)):
            raise WorkflowError("workflow is neither API format nor UI format")
        info = self.object_info()
        try:
            return ui_to_api(workflow, info), workflow
        except MalformedNodeInfo as exc:
            raise BadServerAnswer(str(exc)) from exc
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise WorkflowError(f"cannot convert the workflow, it has an unexpected shape ({type(exc).__name__}: "
                                f"{exc}); expected a workflow saved by the ComfyUI front end") from exc

    def submit(self, prompt: dict, ui_workflow: dict | None = None) -> str:
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if ui_workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": ui_workflow}}
        status, raw = self.request("POST", "/prompt", body)
        if status == 400:  # ComfyUI's answer to a prompt that fails validation
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                data = {"error": raw[:2000].decode(errors="replace")}
            data = data if isinstance(data, dict) else {"error": data}
            raise PromptRejected(data.get("error"), data.get("node_errors"))
        self._check_status(status, raw, "POST /prompt")
        data = _expect(self._json(raw, "POST /prompt"), dict, "POST /prompt")
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise BadServerAnswer(f"POST /prompt: expected a prompt_id string, found {str(prompt_id)[:100]!r}")
        return prompt_id

    def run(self, workflow: dict, *, timeout: float = 600.0,
            on_event: Callable[[str, dict], None] | None = None, check: bool = False) -> PromptResult:
        """Queue a workflow (either format), wait until it finishes, return a PromptResult.
        Raises PromptRejected on validation errors; with ``check`` also PromptFailed."""
        prompt, ui = self.to_api(workflow)
        url = self.base.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}"
        try:
            ws = WebSocket(url, timeout=max(self._limit(self.timeout).remaining(), 0.001))
        except (OSError, ConnectionError, ValueError, WebSocketProtocolError):
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

    def _next_message(self, ws: WebSocket, wait: Deadline) -> tuple[str, dict] | None:
        """(type, data) of the next execution message, None when none came in a short while.
        Raises ConnectionError when the websocket closed."""
        try:
            msg = ws.recv(timeout=min(2.0, max(0.05, wait.remaining())))
        except socket.timeout:
            return None
        except WebSocketProtocolError as exc:
            raise BadServerAnswer(f"ComfyUI at {self.base} broke the websocket protocol: {exc}") from exc
        if isinstance(msg, bytes):
            return "", {}  # binary preview frames: no type, skipped
        m = self._json(msg, "websocket message")
        if not isinstance(m, dict) or not isinstance(m.get("type"), str):
            raise BadServerAnswer(f"websocket message: expected {{'type': ..., 'data': ...}}, found {msg[:100]!r}")
        data = {} if m.get("data") is None else m["data"]
        if not isinstance(data, dict):
            if m["type"] in EXECUTION_EVENTS:
                raise BadServerAnswer(f"websocket {m['type']} message: expected an object as data, found {msg[:100]!r}")
            return "", {}  # another pack's message: its data may be anything
        return m["type"], data

    def _wait(self, prompt_id: str, ws: WebSocket | None, timeout: float,
              on_event: Callable[[str, dict], None] | None) -> PromptResult:
        wait = self._limit(timeout)
        events: collections.deque = collections.deque(maxlen=MAX_EVENTS)
        error = None
        status = None

        def poll() -> dict | None:
            return self.history(prompt_id, timeout=min(self.timeout, max(wait.remaining(), 0.001)))

        while not wait.expired() and status is None:
            if ws is None:
                h = poll()
                if h is not None:
                    status = _status_from_history(h)
                else:
                    time.sleep(min(0.25, max(wait.remaining(), 0)))
                continue
            try:
                message = self._next_message(ws, wait)
            except (OSError, ConnectionError):
                ws = None
                continue
            if message is None:
                h = poll()  # a missed event must not hang us
                if h is not None:
                    status = _status_from_history(h)
                continue
            etype, data = message
            if not etype or data.get("prompt_id") not in (None, prompt_id):
                continue
            if etype == "status" and "prompt_id" not in data:
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
        if status is None:
            raise ComfyError(f"timed out after {wait.seconds:.3g} s waiting for prompt {prompt_id}")
        # the history entry is written right after the last event; give it a moment
        hist = None
        settle = self._limit(10.0)
        while hist is None and not settle.expired():
            hist = self.history(prompt_id, timeout=min(self.timeout, max(settle.remaining(), 0.001)))
            if hist is None:
                time.sleep(min(0.1, max(settle.remaining(), 0)))
        hist = hist or {}
        final = status
        if status in ("done", "success", "error"):
            hs = _status_from_history(hist) if hist else None
            if error is None:
                error = _error_from_history(hist)
            final = "error" if (error is not None or hs == "error") else "success"
            if hs == "interrupted":
                final = "interrupted"
        return PromptResult(prompt_id=prompt_id, status=final, history=hist, error=error, events=list(events))


def _status_from_history(h: dict) -> str:
    st = h.get("status") or {}
    for m in st.get("messages") or []:
        if isinstance(m, (list, tuple)) and len(m) == 2:
            if m[0] == "execution_interrupted":
                return "interrupted"
            if m[0] == "execution_error":
                return "error"
    if st.get("status_str") == "error":
        return "error"
    return "success"


def _error_from_history(h: dict) -> dict | None:
    for m in (h.get("status") or {}).get("messages") or []:
        if isinstance(m, (list, tuple)) and len(m) == 2 and m[0] == "execution_error":
            return m[1]
    return None
