"""The headless client's errors and the exit status each one gives the CLI."""
from __future__ import annotations

from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_INTERRUPTED, EXIT_UNREACHABLE, EXIT_BAD_ANSWER = 0, 1, 2, 3, 4, 5


class ComfyError(Exception):
    """Base class of the client's errors; as such: the server is unreachable, the connection
    broke, or the run did not finish in time."""

    exit_code = EXIT_UNREACHABLE


class BadServerAnswer(ComfyError):
    """The server answered something ComfyUI never sends: not JSON, JSON of the wrong shape, an
    unexpected HTTP status or redirect, an answer over the size caps, a broken websocket frame."""

    exit_code = EXIT_BAD_ANSWER


class WorkflowError(ComfyError):
    """The workflow file cannot be read or converted to API format."""

    exit_code = EXIT_REJECTED


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: validation failed (see ``node_errors``)."""

    exit_code = EXIT_REJECTED

    def __init__(self, error: Any, node_errors: Any):
        self.error = error
        self.node_errors = node_errors if isinstance(node_errors, dict) else {}
        super().__init__(format_node_errors(error, self.node_errors))


class PromptFailed(ComfyError):
    """The prompt was queued but failed (``execution_error``) or was interrupted."""

    def __init__(self, result):
        self.result = result
        self.exit_code = EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_FAILED
        super().__init__(result.error_text())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def format_node_errors(error: Any, node_errors: Any) -> str:
    """The rejection as lines of text; the server's JSON is shown as it came, whatever its shape."""
    lines = []
    if isinstance(error, dict):
        msg, det = _text(error.get("message")), _text(error.get("details"))
        lines.append(f"{msg}{': ' + det if det else ''}".strip())
    elif error:
        lines.append(_text(error))
    for nid, ne in (node_errors if isinstance(node_errors, dict) else {}).items():
        ne = ne if isinstance(ne, dict) else {"errors": [ne]}
        errors = ne.get("errors")
        for err in errors if isinstance(errors, list) else [errors]:
            err = err if isinstance(err, dict) else {"message": err}
            det = _text(err.get("details"))
            lines.append(f"node {nid} ({_text(ne.get('class_type')) or '?'}): {_text(err.get('message'))}"
                         f"{': ' + det if det else ''}")
    return "\n".join(line for line in lines if line) or "prompt rejected"
