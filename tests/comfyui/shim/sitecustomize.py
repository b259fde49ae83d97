"""Test-harness only: a scoped stand-in for ``torchvision`` inside the ComfyUI test server.

The early-2024 ComfyUI we test against imports torchvision at start-up, but only for two
optional features: Stable Cascade's EfficientNet encoder/ControlNet
(``comfy/ldm/cascade/stage_c_coder.py`` and ``controlnet.py``: ``import torchvision``) and the
LaMa upscale architecture (``from torchvision.transforms.functional import InterpolationMode,
rotate``). torchvision has no CPU build for torch 2.13 here, so this folder (prepended to
PYTHONPATH of the server process only) serves the tiny package ``_hvs_torchvision_shim`` under
the name ``torchvision`` -- but ONLY to importers inside ComfyUI's own ``comfy/`` and
``comfy_extras/`` trees (the folder named by HVS_TORCHVISION_SHIM_FOR). Everybody else
(transformers, diffusers, our pack) keeps seeing "torchvision is not installed":
``importlib.util.find_spec("torchvision")`` returns None, because the shim is not on sys.path
under that name and its modules are dropped from ``sys.modules`` again as soon as ComfyUI's
import has finished. Calling any shimmed function raises NotImplementedError.
"""
import importlib.abc
import importlib.util
import os
import sys

_SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_hvs_torchvision_shim")
_COMFY = os.environ.get("HVS_TORCHVISION_SHIM_FOR", "")
_ALLOWED = tuple(os.path.join(os.path.realpath(_COMFY), d) + os.sep for d in ("comfy", "comfy_extras")) if _COMFY else ()


def _is_tv(name):
    return name == "torchvision" or name.startswith("torchvision.")


def _importer_allowed():
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if fn.startswith("<frozen importlib") or fn == __file__:
            f = f.f_back
            continue
        real = os.path.realpath(fn)
        return real.startswith(_ALLOWED) or real.startswith(_SHIM_DIR + os.sep)
    return False


class _ScopedTorchvisionShim(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not _is_tv(fullname):
            self._purge()
            return None
        if not _ALLOWED or not _importer_allowed():
            return None
        parts = fullname.split(".")[1:]
        base = os.path.join(_SHIM_DIR, *parts)
        if os.path.isfile(os.path.join(base, "__init__.py")):
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(base, "__init__.py"), submodule_search_locations=[base])
        if os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(fullname, base + ".py")
        return None

    @staticmethod
    def _purge():
        names = [n for n in list(sys.modules) if _is_tv(n)]
        if not names:
            return
        for n in names:  # never while one of them is still being imported
            spec = getattr(sys.modules.get(n), "__spec__", None)
            if spec is None or getattr(spec, "_initializing", False):
                return
        for n in names:
            sys.modules.pop(n, None)


if _ALLOWED and not any(isinstance(f, _ScopedTorchvisionShim) for f in sys.meta_path):
    sys.meta_path.insert(0, _ScopedTorchvisionShim())
