"""Headless ComfyUI client, standard library only (it must run with a bare Python).

* ``workflow_convert``: UI-format workflow -> API-format prompt, with the server's ``/object_info``;
* ``comfy_client``: the HTTP + websocket client (:class:`ComfyClient`, :class:`PromptResult`);
* ``websocket``: a small RFC 6455 client (also drives Chromium in the browser tests);
* ``errors``: the error classes and the exit status each gives ``scripts/hvs_queue.py``.

It reads servers through ``hyvideo_core.bounded_http`` (standard library only as well), so the
repository root must be importable; ``scripts/hvs_queue.py`` puts it on ``sys.path``.
"""
from .comfy_client import ComfyClient, PromptResult
from .errors import (EXIT_BAD_ANSWER, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE,
                     BadServerAnswer, ComfyError, PromptFailed, PromptRejected, WorkflowError, format_node_errors)
from .websocket import WebSocket, WebSocketProtocolError
from .workflow_convert import is_api_format, ui_to_api

__all__ = ["ComfyClient", "PromptResult", "ComfyError", "BadServerAnswer", "WorkflowError", "PromptRejected",
           "PromptFailed", "format_node_errors", "WebSocket", "WebSocketProtocolError", "is_api_format", "ui_to_api",
           "EXIT_OK", "EXIT_FAILED", "EXIT_REJECTED", "EXIT_INTERRUPTED", "EXIT_UNREACHABLE", "EXIT_BAD_ANSWER"]
