"""Writes workflows/<name>.jpg, the pictures ComfyUI's template browser shows for our example
workflows (ComfyUI 0.3.3x+ lists a pack's workflows/*.json as templates and asks for
<name>.jpg beside each; a missing one is a 404 in the browser console). They are the browser
tests' screenshots of each workflow loaded in the front end, scaled down:

    python -m pytest -q tests/comfyui/test_browser.py    # writes tests/_artifacts/frontend_*.png
    python scripts/workflow_thumbnails.py                 # workflows/*.jpg from those
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "_artifacts"
WIDTH = 480
# the newest front end first: that is where the template browser shows them
SOURCES = ("frontend_0.8_litegraph_workflows_{}.png", "frontend_2024_litegraph_workflows_{}.png")


def main() -> int:
    missing = []
    for workflow in sorted((REPO / "workflows").glob("*.json")):
        shots = [ARTIFACTS / s.format(workflow.stem) for s in SOURCES]
        shot = next((s for s in shots if s.is_file()), None)
        if shot is None:
            missing.append(workflow.stem)
            continue
        with Image.open(shot) as img:
            img = img.convert("RGB")
            img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.LANCZOS)
            img.save(workflow.with_suffix(".jpg"), quality=80, optimize=True)
        print(f"{workflow.with_suffix('.jpg').relative_to(REPO)} <- {shot.name}")
    if missing:
        print(f"no screenshot for {', '.join(missing)}: run tests/comfyui/test_browser.py first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
