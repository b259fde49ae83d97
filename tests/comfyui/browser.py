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
# Where our pack's files are served (folder name under custom_nodes/; the project name too, in
# case a ComfyUI serves the web folder under it) and words only our messages contain.
PACK_URL_PARTS = ("/extensions/hunyuanvideo_suite/", "/extensions/hunyuanvideo-suite/",
                  "/workflow_templates/hunyuanvideo_suite/")
PACK_WORDS = ("hvs", "hunyuanvideo")
VUE_NODES_SETTING = "Comfy.VueNodes.Enabled"


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

    def js_errors(self, since: int = 0) -> list[str]:
        out = []
        for ev in self.events[since:]:
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

    def console_messages(self, since: int = 0) -> list[dict]:
        """Every console error/warning, uncaught exception and browser log error/warning seen
        (from event number ``since`` on): {kind, level, text, urls} (urls: the source and every
        stack frame's script)."""
        out = []
        for ev in self.events[since:]:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = params["exceptionDetails"]
                text = ((d.get("exception") or {}).get("description") or d.get("text") or "").strip()
                out.append({"kind": "exception", "level": "error", "text": text,
                            "urls": [d.get("url") or ""] + _stack_urls(d.get("stackTrace"))})
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                args = params.get("args") or []
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                out.append({"kind": "console", "level": params["type"], "text": text,
                            "urls": _stack_urls(params.get("stackTrace"))})
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                e = params["entry"]
                out.append({"kind": "log", "level": e["level"], "text": e.get("text", ""),
                            "urls": [e.get("url") or ""] + _stack_urls(e.get("stackTrace"))})
        return out

    def pack_messages(self, since: int = 0) -> list[str]:
        """The console messages that come from our pack: a source or stack frame under our
        extension/template URLs, or text mentioning hvs / hunyuanvideo."""
        found = []
        for m in self.console_messages(since):
            ours = any(part in url for url in m["urls"] for part in PACK_URL_PARTS)
            if ours or any(w in m["text"].lower() for w in PACK_WORDS):
                found.append(f"[{m['kind']} {m['level']}] {m['text'][:600]} @ {[u for u in m['urls'] if u][:4]}")
        return found

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        self.ws.close()


def _stack_urls(stack) -> list[str]:
    urls = []
    while stack:
        urls += [f.get("url", "") for f in stack.get("callFrames", [])]
        stack = stack.get("parent")
    return urls


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
        """A new tab; ``url`` is opened only after the Runtime/Log domains are on, so the page's
        console messages and exceptions from its very first script are in ``page.events``."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=30) as r:
            target = json.loads(r.read())
        page = Page(target["webSocketDebuggerUrl"])
        page.target_id = target["id"]
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        # every page starts clean: front ends restore the last graph from browser storage, which
        # would carry one test's workflow (and its console messages) into the next
        page.send("Page.addScriptToEvaluateOnNewDocument",
                  {"source": "try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}"})
        if url != "about:blank":
            page.send("Page.navigate", {"url": url})
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
    // the new front end names the tab after the second argument (without one it fails after loading)
    if (isApi) { await app.loadApiJson(wf, "hvs_api_workflow.json"); } else { await app.loadGraphData(wf); }
  } catch (e) { loadError = String(e && e.stack || e); }
  // the legacy front end's dialog, or the Vue front end's (e.g. its missing-node-types dialog)
  await new Promise((res) => setTimeout(res, 300));
  const dlg = app.ui && app.ui.dialog && app.ui.dialog.element;
  const vueDialogs = [...document.querySelectorAll("[role=dialog], [data-testid=error-overlay]")]
    .filter((d) => d.getClientRects().length > 0 && getComputedStyle(d).visibility !== "hidden");
  const dialogText = dlg && getComputedStyle(dlg).display !== "none" ? dlg.textContent
    : (vueDialogs.map((d) => d.textContent).join("\n") || null);
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


def set_setting(server_url: str, setting: str, value) -> None:
    """A front-end user setting, stored by the server and read by the next page load."""
    req = urllib.request.Request(f"{server_url}/settings/{setting}", data=json.dumps(value).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def prepare_new_frontend(server_url: str, view: str) -> None:
    """Node view ("litegraph" or "vue") of the new front end, and no first-run template browser
    over the canvas (it opens for a user who has not finished the tutorial)."""
    set_setting(server_url, "Comfy.TutorialCompleted", True)
    set_setting(server_url, VUE_NODES_SETTING, view == "vue")


@contextlib.contextmanager
def open_frontend(chromium: Chromium, server_url: str, timeout: float = 90.0, view: str | None = None):
    """A Page with the ComfyUI front end fully set up (window.app ready, our extension loaded).
    ``view`` ("litegraph" or "vue", new front end only) sets the node view first and waits until
    the page uses it."""
    if view is not None:
        prepare_new_frontend(server_url, view)
    page = chromium.new_page(server_url + "/")
    try:
        if not page.wait_for("!!(window.app && window.app.graph && window.LiteGraph && app.canvas)", timeout=timeout):
            raise CDPError("the ComfyUI front end did not finish loading: " + "; ".join(page.js_errors()))
        page.wait_for(f"(app.extensions || []).some((e) => e.name === {json.dumps(EXTENSION_NAME)})", timeout=5)
        if view is not None and not page.wait_for(f"LiteGraph.vueNodesMode === {json.dumps(view == 'vue')}", timeout=20):
            raise CDPError(f"the front end did not switch to the {view} node view")
        yield page
    finally:
        chromium.close_page(page)


class FrontendSession:
    """Loads workflows into the front end of one server (a server.ComfyServer), reusing one
    page per node view (a fresh front end takes seconds to boot): a load reports the console
    messages since the previous load on that page (the first one also those of the boot)."""

    def __init__(self, chromium: Chromium, server, artifacts: Path = ARTIFACTS):
        self.chromium, self.server, self.artifacts = chromium, server, Path(artifacts)
        self._page_cm = None
        self.page: Page | None = None
        self.view: str | None = None
        self._seen = 0

    def _page_for(self, view: str) -> Page:
        if self.page is None or self.view != view:
            self.close()
            new_frontend = self.server.flavour.new_frontend
            self._page_cm = open_frontend(self.chromium, self.server.url, view=view if new_frontend else None)
            self.page, self.view, self._seen = self._page_cm.__enter__(), view, 0
        return self.page

    def load(self, workflow: dict, name: str, view: str = "litegraph", fresh: bool = False) -> dict:
        """Load ``workflow`` (UI format via app.loadGraphData, API format via app.loadApiJson) in
        node view ``view`` ("litegraph", or "vue" on the new front end; ``fresh``: in a page of
        its own), screenshot it to ``artifacts/frontend_<flavour>_<view>_<name>.png`` and return
        {missing, extension_registered, extensions, js_errors, pack_messages, dialogText,
        loadError, prompt, promptError, nodeCount, hvsNodeTypes, infoTexts, hvsScripts,
        screenshot}. ``prompt`` is the front end's own graphToPrompt() output (UI format only);
        ``pack_messages`` the console errors/warnings from our pack (see Page.pack_messages);
        ``infoTexts`` the info texts our extension shows as page text (new front end);
        ``hvsScripts`` the URLs of our scripts the page loaded."""
        if view == "vue" and not self.server.flavour.new_frontend:
            raise ValueError("the Vue node view exists only in the new front end")
        if fresh:
            with FrontendSession(self.chromium, self.server, self.artifacts) as one_off:
                return one_off.load(workflow, name, view)
        page = self._page_for(view)
        result = page.evaluate(f"{_LOAD_JS}({json.dumps(workflow)})", timeout=90)
        time.sleep(1.0 if self.server.flavour.new_frontend else 0.3)  # paint; our info widgets refresh
        result.update(page.evaluate(_PAGE_STATE_JS, timeout=30))
        shot = page.screenshot(self.artifacts / f"frontend_{self.server.flavour.name}_{view}_{name}.png")
        page.send("Runtime.evaluate", {"expression": "0"})  # flush pending events
        result["js_errors"] = page.js_errors(self._seen)
        result["pack_messages"] = page.pack_messages(self._seen)
        self._seen = len(page.events)
        result["extension_registered"] = EXTENSION_NAME in result["extensions"]
        result["screenshot"] = str(shot)
        return result

    def close(self) -> None:
        if self._page_cm is not None:
            self._page_cm.__exit__(None, None, None)
        self._page_cm = self.page = self.view = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_workflow(chromium: Chromium, server, workflow: dict, name: str, view: str = "litegraph") -> dict:
    """FrontendSession.load in a page of its own."""
    with FrontendSession(chromium, server) as session:
        return session.load(workflow, name, view)


# Our info texts as the page shows them (DOM, new front end) and our scripts the page loaded.
_PAGE_STATE_JS = r"""
(() => ({
  infoTexts: [...document.querySelectorAll(".hvs-info div")].map((d) => d.textContent),
  hvsScripts: performance.getEntriesByType("resource").map((e) => e.name).filter((n) => /\/hvs(_utils)?\.js$/.test(n)),
}))()
"""
