"""Headless Chromium driven over the Chrome DevTools Protocol (stdlib websocket from
scripts/hvs_queue.py), used to load workflows into the real ComfyUI front end."""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from server import ARTIFACTS, hvs_queue

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars", "--window-size=1400,900"]
EXTENSION_NAME = "hvs.video_helpers"


def chromium_path() -> str | None:
    p = os.environ.get("HVS_CHROMIUM", "/usr/bin/chromium")
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


class CDPError(RuntimeError):
    pass


class Page:
    """One page target: ``send(method, params)``, ``evaluate(js)``; events are kept in
    ``self.events`` (exceptions and console errors are what the tests look at)."""

    def __init__(self, ws_url: str):
        self.ws = hvs_queue.WebSocket(ws_url, timeout=30)
        self._ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0):
        mid = next(self._ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"{method}: no answer within {timeout}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str, timeout: float = 60.0):
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                             "returnByValue": True, "timeout": int(timeout * 1000)}, timeout=timeout)
        if res.get("exceptionDetails"):
            d = res["exceptionDetails"]
            desc = (d.get("exception") or {}).get("description") or d.get("text")
            raise CDPError(f"JS exception: {desc}")
        return (res.get("result") or {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression, timeout=10):
                    return True
            except CDPError:
                pass
            time.sleep(interval)
        return False

    def js_errors(self) -> list[str]:
        out = []
        for ev in self.events:
            if ev.get("method") == "Runtime.exceptionThrown":
                d = ev["params"]["exceptionDetails"]
                out.append(((d.get("exception") or {}).get("description") or d.get("text") or "").strip())
            elif ev.get("method") == "Log.entryAdded" and ev["params"]["entry"].get("level") == "error":
                e = ev["params"]["entry"]
                out.append(f"{e.get('text', '')} {e.get('url', '')}".strip())
            elif ev.get("method") == "Runtime.consoleAPICalled" and ev["params"].get("type") == "error":
                args = ev["params"].get("args") or []
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        return out

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        self.ws.close()


class Chromium:
    """A headless Chromium process with a private profile and a DevTools port."""

    def __init__(self, binary: str):
        self.binary = binary
        self.profile = Path(tempfile.mkdtemp(prefix="hvs-chromium-"))
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> "Chromium":
        cmd = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
               "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank"]
        self.log = open(self.profile / "chromium.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.proc.returncode}): "
                                   + (self.profile / "chromium.log").read_text(errors="replace")[-2000:])
            if port_file.is_file():
                lines = port_file.read_text().split()
                if lines and lines[0].isdigit():
                    self.port = int(lines[0])
                    return self
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def new_page(self, url: str = "about:blank") -> Page:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?{urllib.parse.quote(url, safe='')}",
                                     method="PUT")
        with urllib.request.urlopen(req, timeout=30) as r:
            target = json.loads(r.read())
        page = Page(target["webSocketDebuggerUrl"])
        page.target_id = target["id"]
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        return page

    def close_page(self, page: Page) -> None:
        page.close()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/close/{page.target_id}", timeout=10).read()
        except OSError:
            pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        try:
            self.log.close()
        except Exception:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


# Runs inside the page. Loads a UI-format workflow with app.loadGraphData (or an API-format one
# with app.loadApiJson), then reports what the front end saw.
_LOAD_JS = r"""
(async (wf) => {
  const registered = LiteGraph.registered_node_types;
  const isApi = !Array.isArray(wf.nodes);
  const types = isApi ? Object.values(wf).map((n) => n.class_type) : wf.nodes.map((n) => n.type);
  const missing = [...new Set(types.filter((t) => !(t in registered)))].sort();
  let loadError = null;
  try {
    if (isApi) { app.loadApiJson(wf); } else { await app.loadGraphData(wf); }
  } catch (e) { loadError = String(e && e.stack || e); }
  const dlg = app.ui && app.ui.dialog && app.ui.dialog.element;
  const dialogText = dlg && getComputedStyle(dlg).display !== "none" ? dlg.textContent : null;
  let prompt = null, promptError = null;
  if (!isApi && !missing.length) {
    try { prompt = (await app.graphToPrompt()).output; } catch (e) { promptError = String(e && e.stack || e); }
  }
  // fit the graph into the view for the screenshot
  try {
    const ns = app.graph._nodes;
    if (ns.length) {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const n of ns) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
      }
      const c = app.canvas.canvas, ds = app.canvas.ds;
      const menu = document.querySelector(".comfy-menu");
      const w = c.width - (menu ? menu.offsetWidth + 20 : 0);
      ds.scale = Math.max(0.1, Math.min(1.2, 0.9 * Math.min(w / (x1 - x0), c.height / (y1 - y0))));
      ds.offset[0] = -x0 + (w / ds.scale - (x1 - x0)) / 2;
      ds.offset[1] = -y0 + (c.height / ds.scale - (y1 - y0)) / 2;
      app.canvas.setDirty(true, true); app.canvas.draw(true, true);
    }
  } catch (e) {}
  return {
    missing, loadError, dialogText, prompt, promptError,
    extensions: (app.extensions || []).map((e) => e.name),
    nodeCount: app.graph._nodes.length,
    hvsNodeTypes: Object.keys(registered).filter((t) => t.startsWith("HVS")),
  };
})
"""


@contextlib.contextmanager
def open_frontend(chromium: Chromium, server_url: str, timeout: float = 90.0):
    """A Page with the ComfyUI front end fully set up (window.app ready, our extension loaded)."""
    page = chromium.new_page(server_url + "/")
    try:
        if not page.wait_for("!!(window.app && window.app.graph && window.LiteGraph && app.canvas)", timeout=timeout):
            raise CDPError("the ComfyUI front end did not finish loading: " + "; ".join(page.js_errors()))
        page.wait_for(f"(app.extensions || []).some((e) => e.name === {json.dumps(EXTENSION_NAME)})", timeout=5)
        yield page
    finally:
        chromium.close_page(page)


def load_workflow(chromium: Chromium, server_url: str, workflow: dict, name: str,
                  artifacts: Path = ARTIFACTS) -> dict:
    """Open the front end, load ``workflow`` (UI format via app.loadGraphData, API format via
    app.loadApiJson), screenshot it to ``artifacts/frontend_<name>.png`` and return
    {missing, extension_registered, extensions, js_errors, dialogText, loadError, prompt,
     promptError, nodeCount, hvsNodeTypes, screenshot}. ``prompt`` is the front end's own
    graphToPrompt() output (UI format only)."""
    with open_frontend(chromium, server_url) as page:
        result = page.evaluate(f"{_LOAD_JS}({json.dumps(workflow)})", timeout=90)
        time.sleep(0.3)  # let the canvas paint
        shot = page.screenshot(Path(artifacts) / f"frontend_{name}.png")
        page.send("Runtime.evaluate", {"expression": "0"})  # flush pending events
        result["js_errors"] = page.js_errors()
        result["extension_registered"] = EXTENSION_NAME in result["extensions"]
        result["screenshot"] = str(shot)
        return result
