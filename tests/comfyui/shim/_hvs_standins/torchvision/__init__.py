"""Stand-in for torchvision in the HVS ComfyUI test server (see ../../sitecustomize.py).
Provides only the names ComfyUI touches at start-up; calling any of them raises."""
import sys as _sys

__version__ = "0.0.0+hvs.standin"

from . import models, transforms  # noqa: E402,F401

__getattr__ = _sys.modules["sitecustomize"]._module_getattr(__name__)
