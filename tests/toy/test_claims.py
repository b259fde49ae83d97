"""``python -m hyvideo_core.toy claims`` writes both claims' tables (tiny run: 2 prompts, 2 steps)."""
import json

from hyvideo_core.toy.__main__ import main
from hyvideo_core.toy.model import load_toy


def test_shipped_teacher_is_the_cfg_variant():
    teacher, _, _ = load_toy(teacher=True)
    assert not teacher.config.guidance_embed
    student, _, _ = load_toy()
    assert student.config.guidance_embed


def test_claims_command_writes_results_file(tmp_path):
    out = tmp_path / "claims.md"
    assert main(["claims", "--prompts", "2", "--steps", "2", "--shift-steps", "2", "--shifts", "1", "3",
                 "--seeds", "2", "--shift-models", "student", "teacher", "--out", str(out), "--threads", "1"]) == 0
    text = out.read_text()
    assert "## (a) Shifted schedule" in text and "## (b) Guidance-distilled student" in text
    assert "| student | 2 | 1 | " in text and "| teacher | 2 | 3 | " in text
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [(r["model"], r["steps"], r["shift"]) for r in rows] == [
        ("student", 2, 1.0), ("student", 2, 3.0), ("teacher", 2, 1.0), ("teacher", 2, 3.0),
        ("student", 2, 3.0), ("teacher (true CFG)", 2, 3.0)]
    assert all(0 <= r["adherence"] <= 100 for r in rows)
    assert all(len(r["per_clip"]) == 2 for r in rows)       # one paired value per prompt, seeds averaged
    assert "Tested: s = 3 (the toy's default)" in text and "- teacher, 2 steps: s = 3 " in text
    assert not list(tmp_path.glob("*.partial"))
