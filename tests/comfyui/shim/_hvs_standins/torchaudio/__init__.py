"""Stand-in for torchaudio in the HVS ComfyUI test server (see ../../sitecustomize.py): every
name is a function that raises; submodules (transforms, functional) are generic stand-ins."""
import sys as _sys

__version__ = "0.0.0+hvs.standin"
__getattr__ = _sys.modules["sitecustomize"]._module_getattr(__name__)
