"""HunyuanVideo Suite: ComfyUI entry point.

Nodes are imported only inside ComfyUI (when ``folder_paths`` is importable), so the engine
package ``hyvideo_core`` and the test suite can import this folder without ComfyUI.
"""
import importlib.util

WEB_DIRECTORY = "./web"
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

if importlib.util.find_spec("folder_paths") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
