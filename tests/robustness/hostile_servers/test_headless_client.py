"""scripts/hvs_queue.py (run as a subprocess) against misbehaving ComfyUI servers on loopback.

Every case must end within --timeout + 2 s, with the README's exit status (4: unreachable, broken
connection or too slow; 5: an answer ComfyUI never sends), a one-line message, no partial output
file, and a peak RSS at most 64 MB over a well-behaved run's.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_server import (chunked, drip, endless, head, hold, reset, send_body, send_json, ws_accept, ws_frame,
                            ws_json)

pytestmark = pytest.mark.robustness

CLI = Path(__file__).resolve().parents[3] / "scripts" / "hvs_queue.py"
TIMEOUT = 1.5
SLACK = 2.0
MEMORY_SLACK = 64 << 20
PROMPT_ID = "p-1"
VIEW_BYTES = b"\x89PNG not really an image " * 40
OBJECT_INFO = {
    "EmptyImage": {"input": {"required": {"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}],
                                          "batch_size": ["INT", {"default": 1}], "color": ["INT", {"default": 0}]}},
                   "output": ["IMAGE"]},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "x"}]}},
                  "output": []},
}
API_WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
UI_WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": [8, 8, 1, 0], "inputs": []},
                         {"id": 2, "type": "SaveImage", "widgets_values": ["x"],
                          "inputs": [{"name": "images", "type": "IMAGE", "link": 1}]}],
               "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
HISTORY = {PROMPT_ID: {"status": {"status_str": "success", "completed": True, "messages": []},
                       "outputs": {"2": {"images": [{"filename": "out.png", "subfolder": "", "type": "output"}]}}}}


def ws_done(conn, req):
    """What ComfyUI's /ws says for a prompt that ran: start, a node, the end."""
    ws_accept(conn, req)
    for event in ({"type": "execution_start", "data": {"prompt_id": PROMPT_ID}},
                  {"type": "executing", "data": {"node": "2", "prompt_id": PROMPT_ID}},
                  {"type": "executing", "data": {"node": None, "prompt_id": PROMPT_ID}}):
        conn.sendall(ws_json(event))
    hold(req)


GOOD = {
    ("GET", "/object_info"): lambda c, r: send_json(c, 200, OBJECT_INFO),
    ("GET", "/ws"): ws_done,
    ("POST", "/prompt"): lambda c, r: send_json(c, 200, {"prompt_id": PROMPT_ID, "number": 0, "node_errors": {}}),
    ("GET", "/history/"): lambda c, r: send_json(c, 200, HISTORY),
    ("GET", "/view"): lambda c, r: send_body(c, 200, VIEW_BYTES, "image/png"),
}


def ws_then(*frames, endless_frame=None):
    def route(conn, req):
        ws_accept(conn, req)
        for frame in frames:
            conn.sendall(frame)
        if endless_frame is not None:
            endless(conn, req, endless_frame)
        hold(req)
    return route


def ws_handshake_drip(conn, req):
    drip(conn, req, head(101, {"Upgrade": "websocket", "Connection": "Upgrade"}) + b"x" * 1000)


def progress(i=1):
    return ws_json({"type": "progress", "data": {"value": i, "max": 10 ** 9, "node": "2", "prompt_id": PROMPT_ID}})


# id: (workflow, the routes that misbehave, exit status); "view" cases also check that no file is left
CASES = {
    # --- never / too slowly
    "prompt_never_answers": ("api", {("POST", "/prompt"): lambda c, r: hold(r)}, 4),
    "prompt_status_line_drips": ("api", {("POST", "/prompt"): lambda c, r: drip(c, r, b"HTTP/1.1 200 OK\r\n" * 50)}, 4),
    "prompt_body_drips": ("api", {("POST", "/prompt"): lambda c, r: drip(
        c, r, head(200, {"Content-Length": 10 ** 5}) + b" " * 10 ** 5)}, 4),
    "object_info_never_answers": ("ui", {("GET", "/object_info"): lambda c, r: hold(r)}, 4),
    "ws_handshake_drips": ("api", {("GET", "/ws"): ws_handshake_drip}, 4),
    "ws_event_flood_never_ends": ("api", {("GET", "/ws"): ws_then(endless_frame=progress())}, 4),
    "ws_empty_fragments_never_end": ("api", {("GET", "/ws"): ws_then(
        ws_frame(b"", fin=False), endless_frame=ws_frame(b"", opcode=0x0, fin=False))}, 4),
    # --- broken connections
    "prompt_closed_without_answer": ("api", {("POST", "/prompt"): lambda c, r: None}, 4),
    "history_reset_mid_body": ("api", {("GET", "/history/"): lambda c, r: (
        c.sendall(head(200, {"Content-Length": 1000}) + b'{"p-1": {'), time.sleep(0.1), reset(c))}, 4),
    "view_reset_mid_body": ("api", {("GET", "/view"): lambda c, r: (
        c.sendall(head(200, {"Content-Length": 10 << 20}) + b"\0" * (1 << 20)), time.sleep(0.1), reset(c))}, 4),
    "view_endless_body": ("api", {("GET", "/view"): lambda c, r: (
        c.sendall(head(200, {"Connection": "close"})), endless(c, r, b"\0" * (1 << 20), every=0.01))}, 4),
    "view_declares_a_terabyte": ("api", {("GET", "/view"): lambda c, r: (
        c.sendall(head(200, {"Content-Length": 10 ** 12}) + b"\0" * 1000), hold(r))}, 4),
    # --- answers ComfyUI never sends
    "object_info_endless_body": ("ui", {("GET", "/object_info"): lambda c, r: (
        c.sendall(head(200, {"Connection": "close"}) + b'{"a": "'), endless(c, r, b"a" * (1 << 16)))}, 5),
    "object_info_endless_chunks": ("ui", {("GET", "/object_info"): lambda c, r: (
        c.sendall(head(200, {"Transfer-Encoding": "chunked"})), endless(c, r, b"[" * (1 << 16), frame=chunked))}, 5),
    "object_info_html": ("ui", {("GET", "/object_info"): lambda c, r: send_body(
        c, 200, b"<html><body>Welcome to nginx!</body></html>", "text/html")}, 5),
    "object_info_wrong_shape": ("ui", {("GET", "/object_info"): lambda c, r: send_json(
        c, 200, {"EmptyImage": "not a node definition", "SaveImage": []})}, 5),
    "object_info_is_a_list": ("ui", {("GET", "/object_info"): lambda c, r: send_json(c, 200, [1, 2, 3])}, 5),
    "prompt_declares_a_petabyte": ("api", {("POST", "/prompt"): lambda c, r: (
        c.sendall(head(200, {"Content-Length": 10 ** 15}) + b"{"), hold(r))}, 5),
    "prompt_garbage_json": ("api", {("POST", "/prompt"): lambda c, r: send_body(c, 200, b'{"prompt_id": ')}, 5),
    "prompt_answer_is_a_list": ("api", {("POST", "/prompt"): lambda c, r: send_json(c, 200, [PROMPT_ID])}, 5),
    "prompt_id_not_a_string": ("api", {("POST", "/prompt"): lambda c, r: send_json(c, 200, {"prompt_id": 42})}, 5),
    "prompt_http_500": ("api", {("POST", "/prompt"): lambda c, r: send_body(
        c, 500, b"<html>Internal Server Error</html>", "text/html")}, 5),
    "prompt_bad_status_line": ("api", {("POST", "/prompt"): lambda c, r: (c.sendall(b"GARBAGE\r\n\r\n"), hold(r))}, 5),
    "prompt_endless_header_line": ("api", {("POST", "/prompt"): lambda c, r: (
        c.sendall(b"HTTP/1.1 200 OK\r\nX-Long: "), endless(c, r, b"a" * (1 << 16)))}, 5),
    "prompt_thousand_headers": ("api", {("POST", "/prompt"): lambda c, r: (
        c.sendall(head(200, {f"X-{i}": i for i in range(1000)}) + b"{}"), hold(r))}, 5),
    "history_wrong_types": ("api", {("GET", "/history/"): lambda c, r: send_json(
        c, 200, {PROMPT_ID: {"status": {}, "outputs": {"2": {"images": [{"filename": 7}]}}}})}, 5),
    "history_is_a_list": ("api", {("GET", "/history/"): lambda c, r: send_json(c, 200, [])}, 5),
    "ws_endless_fragments": ("api", {("GET", "/ws"): ws_then(
        ws_frame(b"x" * 1000, fin=False), endless_frame=ws_frame(b"x" * (1 << 16), opcode=0x0, fin=False))}, 5),
    "ws_frame_declares_an_exabyte": ("api", {("GET", "/ws"): ws_then(ws_frame(b"", declared=1 << 62))}, 5),
    "ws_garbage_json": ("api", {("GET", "/ws"): ws_then(ws_frame(b"not json at all"))}, 5),
    "ws_message_not_an_object": ("api", {("GET", "/ws"): ws_then(ws_json([1, 2, 3]))}, 5),
    "ws_event_data_wrong_type": ("api", {("GET", "/ws"): ws_then(ws_json({"type": "executing", "data": [1]}))}, 5),
    "ws_masked_frame": ("api", {("GET", "/ws"): ws_then(ws_frame(b'{"type": "status"}', masked=True))}, 5),
    "ws_text_not_utf8": ("api", {("GET", "/ws"): ws_then(ws_frame(b"\xff\xfe\xfd"))}, 5),
    "view_http_404": ("api", {("GET", "/view"): lambda c, r: send_json(c, 404, {"error": "no such file"})}, 5),
}


def run_cli(url: str, workflow: Path, out_dir: Path, timeout: float = TIMEOUT):
    """(exit status, stdout, stderr, seconds, peak RSS bytes) of one CLI run; killed, so that the
    test fails instead of hanging, if it outlives its timeout by far."""
    out_log, err_log = out_dir.parent / "stdout.txt", out_dir.parent / "stderr.txt"
    start = time.monotonic()
    with open(out_log, "wb") as out, open(err_log, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(CLI), str(workflow), "--server", url, "--out", str(out_dir),
                                 "--timeout", str(timeout)], stdout=out, stderr=err)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout + 20:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out_log.read_text(), err_log.read_text(), elapsed, usage.ru_maxrss * 1024


def write_workflow(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(API_WORKFLOW if kind == "api" else UI_WORKFLOW))
    return path


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory):
    """Peak RSS of a run against a well-behaved server (which must succeed)."""
    from hostile_server import HostileServer

    tmp = tmp_path_factory.mktemp("baseline")
    server = HostileServer(GOOD)
    try:
        rc, out, err, _, rss = run_cli(server.url, write_workflow(tmp, "ui"), tmp / "out", timeout=30)
    finally:
        server.close()
    assert rc == 0, err
    assert Path(out.strip()).read_bytes() == VIEW_BYTES
    return rss


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_comfyui(case, serve, tmp_path, baseline_rss):
    workflow, bad_routes, expected = CASES[case]
    server = serve({**GOOD, **bad_routes})
    rc, out, err, elapsed, rss = run_cli(server.url, write_workflow(tmp_path, workflow), tmp_path / "out")
    assert (rc, elapsed <= TIMEOUT + SLACK) == (expected, True), (rc, elapsed, err[-2000:])
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err[-2000:]
    assert rss <= baseline_rss + MEMORY_SLACK, f"peak RSS {rss >> 20} MiB, baseline {baseline_rss >> 20} MiB"
    left = [p for p in (tmp_path / "out").rglob("*")] if (tmp_path / "out").exists() else []
    assert not [p for p in left if p.is_file()], left  # no output, no partial file
    assert not out.strip()


def test_redirect_to_another_host_is_not_followed(serve, tmp_path):
    """A redirect to another address (127.0.0.2 here) is refused, not followed: exit 5, and the
    other host never hears from the client."""
    other = serve(GOOD, host="127.0.0.2")
    server = serve({**GOOD, ("POST", "/prompt"): lambda c, r: send_body(
        c, 307, b"", extra={"Location": other.url + "/prompt"})})
    rc, out, err, elapsed, _ = run_cli(server.url, write_workflow(tmp_path, "api"), tmp_path / "out")
    assert (rc, elapsed <= TIMEOUT + SLACK) == (5, True), (rc, elapsed, err)
    assert "redirect" in err and other.url in err
    assert other.requests == []


def test_unreachable_server_is_exit_4(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, _, err, elapsed, _ = run_cli(f"http://127.0.0.1:{port}", write_workflow(tmp_path, "api"), tmp_path / "out")
    assert (rc, elapsed <= TIMEOUT + SLACK) == (4, True) and "cannot reach ComfyUI" in err, err


def test_client_imports_only_the_standard_library():
    """The headless client must run with a bare Python: no site-packages, no third-party module."""
    code = ("import sys; sys.argv = ['hvs_queue.py', '--help']; import runpy\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "import hvs_client.comfy_client\n"
            "outside = sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names"
            " and m.split('.')[0] not in ('hvs_client', 'hyvideo_core', '__main__'))\n"
            "print(outside)\n") % str(CLI)
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
