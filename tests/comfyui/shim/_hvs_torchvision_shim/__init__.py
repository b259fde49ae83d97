"""Stand-in for torchvision in the HVS ComfyUI test server (see ../sitecustomize.py).
Provides only the names ComfyUI imports at start-up; using any of them raises."""
__version__ = "0.0.0+hvs.shim"

from . import models, transforms  # noqa: E402,F401
