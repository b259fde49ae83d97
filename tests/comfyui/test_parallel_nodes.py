"""Parallel sampling inside a real ComfyUI server: the text_to_video_parallel API twin (toy model,
HunyuanVideo Parallel Settings with 2 CPU workers) against the single-process sampler; Cancel; and
the workers' lifetime, which ends with the server's."""
import json
import re
import tempfile
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import server as harness
from cancelling import cancel_after_first_step

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
WORKER_MODULE = "hyvideo_core.parallel.pool_worker"


def twin(**overrides) -> dict:
    wf = json.loads((WORKFLOWS / "api" / "text_to_video_parallel.json").read_text())
    for node_id, inputs in overrides.items():
        wf[node_id]["inputs"].update(inputs)
    return wf


def with_saved_latent(wf: dict, prefix: str) -> dict:
    """Core's SaveLatent on the sampler's output: the raw latents as a .latent (safetensors) file."""
    wf["100"] = {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": prefix}}
    return wf


def single_process(wf: dict) -> dict:
    del wf["6"]["inputs"]["parallel"], wf["18"]
    return wf


def saved_latent(server, result):
    [item] = [i for node in result.outputs.values() for i in node.get("latents", [])]
    return load_file(str(server.output_path(item)))["latent_tensor"]


def workers_of(server_pid: int) -> list:
    """Our worker processes started by the ComfyUI process ``server_pid`` (their command line names it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ")[-1][0]
        except OSError:
            continue
        if WORKER_MODULE.encode() in argv and b"--owner" in argv and state != "Z" \
                and argv[argv.index(b"--owner") + 1] == str(server_pid).encode():
            found.append(int(proc.name))
    return found


@pytest.fixture
def previews(monkeypatch):
    """Binary preview frames the server sends over the websocket while a prompt runs."""
    frames = []
    recv = harness.hvs_queue.WebSocket.recv

    def counting(self, timeout=None):
        msg = recv(self, timeout)
        if isinstance(msg, bytes):
            frames.append(msg)
        return msg
    monkeypatch.setattr(harness.hvs_queue.WebSocket, "recv", counting)
    return frames


def test_parallel_twin_gives_the_single_process_latent_with_progress_and_previews(comfyui_server, queue_prompt,
                                                                                previews):
    info = comfyui_server.object_info()
    assert info["HVS_Sampler"]["input"]["optional"]["parallel"][0] == "HVS_PARALLEL"
    assert info["HVS_ParallelSettings"]["output"] == ["HVS_PARALLEL"]

    runs = {}
    for name, wf in (("parallel", with_saved_latent(twin(), "hvs_parallel/parallel")),
                     ("single", single_process(with_saved_latent(twin(), "hvs_parallel/single")))):
        previews.clear()
        result = queue_prompt(wf, timeout=600)
        steps = [d["value"] for e, d in result.events if e == "progress" and d.get("node") == "6"]
        runs[name] = (saved_latent(comfyui_server, result), steps, list(previews), result)
    (par, par_steps, par_previews, par_result), (one, one_steps, one_previews, _) = runs["parallel"], runs["single"]
    assert par.shape == one.shape == (1, 16, 5, 8, 8)
    assert (par - one).abs().max() <= 1e-4
    assert par_steps == one_steps == list(range(1, 9))              # the progress bar, step by step
    assert len(par_previews) == len(one_previews) == 8              # a latent preview per step
    assert all(f[:4] == b"\0\0\0\1" and b"\xff\xd8" in f[:16] for f in par_previews)   # PREVIEW_IMAGE, JPEG
    assert [f for f in par_result.files() if f["kind"] == "gifs"]    # and the twin's video was written
    assert "parallel sampling on 2 cpu workers: Ulysses 2 x ring 1 x CFG 1" in comfyui_server.log_text()


def test_cancel_stops_every_worker_after_the_same_step(comfyui_server, queue_prompt, comfy_interrupt):
    log_start = len(comfyui_server.log_text())
    on_event, steps_seen = cancel_after_first_step(comfy_interrupt, 200)

    result = queue_prompt(twin(**{"6": {"steps": 200}}), timeout=600, check=False, on_event=on_event)
    assert result.status == "interrupted"
    stops = re.findall(r"\[hvs parallel worker (\d)/2 pid \d+\] interrupted: stopped after step (\d+) of 200",
                       comfyui_server.log_text()[log_start:])
    assert sorted(rank for rank, _ in stops) == ["0", "1"], stops
    assert len({step for _, step in stops}) == 1                     # every worker after the same step ...
    assert int(stops[0][1]) == max(steps_seen) + 1                   # ... the one whose progress met the Cancel
    # the warm workers take the next prompt
    result = queue_prompt(twin(**{"6": {"steps": 2}}), timeout=600)
    assert [f for f in result.files() if f["kind"] == "gifs"]


def test_workers_exit_when_the_server_exits(comfyui_dir):
    workdir = Path(tempfile.mkdtemp(prefix="hvs-comfyui-parallel-"))
    srv = harness.ComfyServer(comfyui_dir, workdir)
    try:
        srv.start()
        srv.queue_prompt(twin(**{"6": {"steps": 1}}), timeout=600)
        server_pid = srv.proc.pid
        workers = workers_of(server_pid)
        assert len(workers) == 2, srv.log_text()[-3000:]
    finally:
        srv.stop()                                                   # SIGTERM, as a service manager would
        harness.save_log_artifact(srv, "comfyui-parallel-server.log")
    deadline = time.monotonic() + 10
    while workers_of(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers_of(server_pid), "parallel workers still running 10 s after the server exited"
    import shutil
    shutil.rmtree(workdir, ignore_errors=True)
