"""Test-harness only: scoped stand-ins for packages ComfyUI imports but we cannot install.

torchvision and torchaudio have no CPU build for torch 2.13 here, and spandrel depends on
torchvision. ComfyUI imports them at start-up for optional features we never use in the tests
(2024: Stable Cascade's EfficientNet and the LaMa upscaler; 0.8 also: audio nodes and VAEs, the
upscale-model loader, Cosmos/ACE/WanMove transforms). This folder is prepended to PYTHONPATH of
the server process only; its finder serves ``_hvs_standins/<name>`` under the real name --
but ONLY to importers inside ComfyUI's own ``comfy/``, ``comfy_extras/``, ``comfy_api/`` and
``comfy_api_nodes/`` trees (of the folder named by HVS_SHIM_FOR_COMFYUI). Everybody else
(transformers, diffusers, our pack) keeps seeing "not installed": ``find_spec`` returns None,
because the stand-ins are not on sys.path under those names and are dropped from
``sys.modules`` again as soon as ComfyUI's import has finished.

A stand-in module has the few names ComfyUI touches at import time (files in _hvs_standins/);
any other attribute or submodule is a function that raises NotImplementedError when called.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types

_STANDINS = ("torchvision", "torchaudio", "spandrel")
_SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_hvs_standins")
_COMFY = os.environ.get("HVS_SHIM_FOR_COMFYUI", "")
_ALLOWED = tuple(os.path.join(os.path.realpath(_COMFY), d) + os.sep
                 for d in ("comfy", "comfy_extras", "comfy_api", "comfy_api_nodes")) if _COMFY else ()


def _is_standin(name):
    return name.split(".", 1)[0] in _STANDINS


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


def _unavailable(qualname):
    def stand_in(*args, **kwargs):
        raise NotImplementedError(f"{qualname}: not installed in the HVS ComfyUI test server (import stand-in)")
    stand_in.__name__ = stand_in.__qualname__ = qualname.rsplit(".", 1)[-1]
    return stand_in


def _module_getattr(module_name):
    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _unavailable(f"{module_name}.{attr}")
    return __getattr__


class _GenericLoader(importlib.abc.Loader):
    """A submodule we have no file for: an empty package whose every name is a stand-in."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__getattr__ = _module_getattr(module.__name__)


class _ScopedStandins(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not _is_standin(fullname):
            self._purge()
            return None
        if not _ALLOWED or not _importer_allowed():
            return None
        base = os.path.join(_SHIM_DIR, *fullname.split("."))
        if os.path.isfile(os.path.join(base, "__init__.py")):
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(base, "__init__.py"), submodule_search_locations=[base])
        if os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(fullname, base + ".py")
        return importlib.machinery.ModuleSpec(fullname, _GenericLoader(), is_package=True)

    @staticmethod
    def _purge():
        names = [n for n in list(sys.modules) if _is_standin(n)]
        if not names:
            return
        for n in names:  # never while one of them is still being imported
            spec = getattr(sys.modules.get(n), "__spec__", None)
            if spec is None or getattr(spec, "_initializing", False):
                return
        for n in names:
            sys.modules.pop(n, None)


if _ALLOWED and not any(isinstance(f, _ScopedStandins) for f in sys.meta_path):
    sys.meta_path.insert(0, _ScopedStandins())
