"""Stand-in for spandrel in the HVS ComfyUI test server (see ../../sitecustomize.py): ComfyUI's
upscale-model nodes import these names; using them raises."""
import sys as _sys

__version__ = "0.0.0+hvs.standin"


class ImageModelDescriptor:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("spandrel: not installed in the HVS ComfyUI test server (import stand-in)")


MAIN_REGISTRY = None
__getattr__ = _sys.modules["sitecustomize"]._module_getattr(__name__)
