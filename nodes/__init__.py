"""ComfyUI node adapters (placeholder created by the ComfyUI test harness; the nodes engineer replaces it)."""
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
