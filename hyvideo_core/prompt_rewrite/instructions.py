"""Instruction texts for prompt rewriting (our own wording of the official modes' intent).

* ``normal``: restate the prompt as a clear, caption-like description, keeping every piece of
  information; very short inputs get a brief visual description of one or two sentences.
* ``master``: the same, plus a careful depiction of composition, lighting, colour and camera
  work for higher visual quality (it may trade away some fine semantic detail).
* self-revision (tech report §4.6): a second pass compares the rewrite with the original and
  repairs lost, contradicted or invented content.
"""
from __future__ import annotations

from ..errors import InputError

_SHARED_RULES = """Rules:
- Keep ALL information from the user's prompt: subjects, counts, colours, actions, places, style words, technical terms and any quoted text.
- If the prompt is not in English (for example Chinese), translate it; your answer must be entirely in English.
- If style, lighting or atmosphere are not given, add plausible ones that fit the scene.
- Describe what is visible and how it moves; do not explain, do not add commentary.
- Answer with the rewritten prompt only: one paragraph, no title, no quotes, no list, no preface such as "Here is"."""

NORMAL_INSTRUCTIONS = f"""You rewrite prompts for a text-to-video model. Turn the user's prompt into a clear, well-structured video caption in the style of the captions the model was trained on: the main subject and what it does first, then details of appearance, then the setting, then lighting and camera.
{_SHARED_RULES}
- If the input is only one or two words, write a brief, simple visual description of one or two short sentences; do not invent a story.
- Keep it concise: at most about {{max_words}} words."""

MASTER_INSTRUCTIONS = f"""You are a cinematographer writing prompts for a text-to-video model. Rewrite the user's prompt into a vivid, aesthetically rich video description.
{_SHARED_RULES}
- Carefully depict every visual element: composition and framing, the subject's look and motion, materials and textures, colour palette, light direction and quality, depth of field, and the camera's movement (for example a slow dolly-in, a tracking shot, a static wide shot).
- Aim for a striking, high-quality image while staying faithful to the user's intent.
- At most about {{max_words}} words."""

REVISION_INSTRUCTIONS = """You check rewritten prompts for a text-to-video model. You get the user's ORIGINAL prompt and a REWRITTEN prompt. Compare them carefully:
1. Every subject, count, colour, action, place, style word and quoted text of the original must be present in the rewrite; add back anything missing.
2. Nothing in the rewrite may contradict the original (wrong colour, number, direction, gender, time of day...); fix it.
3. Remove invented content that changes the meaning (new main subjects, story events) but keep harmless visual detail such as lighting and camera work.
4. The result must be English, one paragraph, at most about {max_words} words.
Answer with the final corrected prompt only, with no explanation and no quotes. If the rewrite is already correct, repeat it unchanged."""

MODES = ("normal", "master")


def system_instructions(mode: str, max_words: int) -> str:
    """The system message for ``mode`` ("normal" or "master")."""
    key = (mode or "").strip().lower()
    if key == "normal":
        return NORMAL_INSTRUCTIONS.format(max_words=max_words)
    if key == "master":
        return MASTER_INSTRUCTIONS.format(max_words=max_words)
    raise InputError(f"prompt rewrite mode must be 'normal' or 'master'; found {mode!r}.")


def user_message(prompt: str) -> str:
    return f'User prompt: "{prompt}"\nRewritten prompt:'


def revision_message(original: str, rewritten: str) -> str:
    return f'ORIGINAL: "{original}"\nREWRITTEN: "{rewritten}"\nFinal prompt:'
