#!/usr/bin/env python3
"""Queue a ComfyUI workflow headlessly, follow its progress and download its outputs.

    python scripts/hvs_queue.py WORKFLOW.json [--server http://127.0.0.1:8188] [--out DIR] [--timeout S]

WORKFLOW.json may be in API format (``{"<id>": {"class_type": ..., "inputs": {...}}}``, queued
as is) or in UI format (what the front end saves: ``{"nodes": [...], "links": [...]}``), which
is converted to API format with the server's ``/object_info``.

Progress goes to stderr, one line per event; the paths of the downloaded outputs go to stdout,
one per line. Exit status: 0 success, 1 execution error, 2 prompt rejected by validation or a
workflow that cannot be converted, 3 interrupted, 4 server unreachable, connection broken or
``--timeout`` passed, 5 the server answered something ComfyUI never sends (not JSON, wrong
shapes, a redirect, an answer over the size caps, a broken websocket frame).

``--timeout`` bounds the whole run (conversion, queueing, waiting, downloading). Outputs are
streamed to a hidden partial file and renamed when complete; a failed download leaves none.

Standard library only: the client lives in ``hvs_client/`` beside this file (converter, HTTP +
websocket client, errors) and reads servers through ``hyvideo_core/bounded_http.py``; if the
websocket cannot be opened, the client falls back to polling ``/history/<prompt_id>``.
This file is also imported by the test harness (``tests/comfyui/server.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid

_SCRIPTS = os.path.dirname(os.path.abspath(__file__))
for _path in (_SCRIPTS, os.path.dirname(_SCRIPTS)):  # hvs_client/ beside this file, hyvideo_core/ above it
    if _path not in sys.path:
        sys.path.insert(0, _path)

from hvs_client import (EXIT_BAD_ANSWER, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK,  # noqa: E402
                        EXIT_REJECTED, EXIT_UNREACHABLE, BadServerAnswer, ComfyClient, ComfyError, PromptFailed,
                        PromptRejected, PromptResult, WebSocket, WorkflowError, format_node_errors, is_api_format,
                        ui_to_api)
from hyvideo_core.bounded_http import Deadline  # noqa: E402

__all__ = [
    "ComfyClient", "ComfyError", "BadServerAnswer", "PromptRejected", "PromptFailed", "WorkflowError",
    "PromptResult", "WebSocket", "ui_to_api", "is_api_format", "format_node_errors", "main",
    "EXIT_OK", "EXIT_FAILED", "EXIT_REJECTED", "EXIT_INTERRUPTED", "EXIT_UNREACHABLE", "EXIT_BAD_ANSWER",
]


def _progress_printer(prompt: dict):
    def title(node_id):
        entry = prompt.get(str(node_id), {})
        return f"{node_id} {entry.get('class_type', '')}".strip()

    def on_event(etype: str, data: dict) -> None:
        if etype == "execution_start":
            line = f"started prompt {data.get('prompt_id')}"
        elif etype == "execution_cached":
            nodes_ = data.get("nodes")
            if not nodes_ or not isinstance(nodes_, list):
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


def _download(client: ComfyClient, item: dict, dest: str, timeout: float) -> None:
    """Stream one output into ``dest`` through a hidden partial file, renamed when complete."""
    folder = os.path.dirname(dest) or "."
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(dest)}.partial-{uuid.uuid4().hex[:8]}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
    try:
        with os.fdopen(fd, "wb") as f:
            client.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"), sink=f,
                        timeout=timeout)
        os.replace(partial, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", help="workflow JSON file (API or UI format)")
    ap.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"))
    ap.add_argument("--out", default="outputs", help="folder for the downloaded outputs")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds the whole run may take: conversion, queueing, waiting and downloading")
    ap.add_argument("--no-download", action="store_true", help="print the outputs, do not download")
    ap.add_argument("--api-out", help="also write the API-format prompt that was queued to this file")
    args = ap.parse_args(argv)
    deadline = Deadline(args.timeout)

    try:
        with open(args.workflow, encoding="utf-8") as f:
            workflow = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
        print(f"error: cannot read workflow {args.workflow}: {e}", file=sys.stderr)
        return EXIT_REJECTED

    client = ComfyClient(args.server, deadline=deadline)
    try:
        prompt, _ = client.to_api(workflow)
        if args.api_out:
            with open(args.api_out, "w", encoding="utf-8") as f:
                json.dump(prompt, f, indent=2)
        result = client.run(workflow, timeout=args.timeout, on_event=_progress_printer(prompt))
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
            try:
                _download(client, item, dest, args.timeout)
            except ComfyError as e:
                print(f"error: download of {rel} failed: {e}", file=sys.stderr)
                return e.exit_code
            except OSError as e:
                print(f"error: cannot write {dest}: {e}", file=sys.stderr)
                return EXIT_FAILED
            print(dest, flush=True)
    except PromptRejected as e:
        print(f"error: prompt rejected by the server:\n{e}", file=sys.stderr)
        return e.exit_code
    except ComfyError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
