"""Folder confinement for paths typed into node widgets.

A ComfyUI server takes prompts from anyone who can reach it, so a path widget must not become a
way to read or write arbitrary files, nor to learn whether a path exists. Every user-given path
is resolved (symlinks followed, ``..`` collapsed) and accepted only inside ComfyUI's own folders
for that purpose (input/ for datasets, output/ for caches, models/loras for LoRA files), plus
folders the server's owner lists in ``HVS_ALLOWED_FOLDERS`` (os.pathsep-separated) when starting
ComfyUI. A refusal names the allowed folders but never says whether the refused path exists
or where it leads.
"""
from __future__ import annotations

import os
from typing import List, Sequence

from ..hyvideo_core.errors import InputError

ALLOWED_FOLDERS_ENV = "HVS_ALLOWED_FOLDERS"
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255          # one path component, as on ext4 / NTFS / APFS


def allowed_extra_folders() -> List[str]:
    """Folders added by the server's owner (environment, not reachable through a prompt)."""
    return [p for p in os.environ.get(ALLOWED_FOLDERS_ENV, "").split(os.pathsep) if p.strip() and os.path.isabs(p)]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def confined_path(value: str, roots: Sequence[str], what: str) -> str:
    """The real path of ``value`` (a relative one is taken inside ``roots[0]``) if it lies inside
    one of ``roots`` or the HVS_ALLOWED_FOLDERS; InputError otherwise. ``what`` names the widget
    in messages (e.g. "dataset_folder"). Nothing is created and existence is not checked."""
    if not isinstance(value, str):
        raise InputError(f"{what}: expected a path (text), found {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InputError(f"{what}: expected a folder or file name, found an empty value")
    if "\x00" in text:
        raise InputError(f"{what}: the path contains a NUL character; type the name without it")
    if len(text) > MAX_PATH_CHARS:
        raise InputError(f"{what}: the path is {len(text)} characters long; at most {MAX_PATH_CHARS} are accepted")
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    long_part = next((p for p in parts if len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES), None)
    if long_part is not None:
        raise InputError(f"{what}: the name {long_part[:40]!r}... is longer than {MAX_NAME_BYTES} bytes; "
                         f"use a shorter file or folder name")
    real_roots = [os.path.realpath(r) for r in list(roots) + allowed_extra_folders()]
    candidate = os.path.expanduser(text)
    if not os.path.isabs(candidate):
        candidate = os.path.join(real_roots[0], candidate)
    real = os.path.realpath(candidate)
    if not any(_inside(real, root) for root in real_roots):
        shown = ", ".join(dict.fromkeys(real_roots))
        raise InputError(f"{what} {text[:200]!r} is outside the folders this node may use ({shown}); give a path "
                         f"inside one of them (relative paths start in {real_roots[0]}), or have the server's "
                         f"owner add the folder to {ALLOWED_FOLDERS_ENV} (symlinks are followed before this check)")
    return real


def input_roots() -> List[str]:
    import folder_paths

    return [folder_paths.get_input_directory(), folder_paths.get_output_directory()]


def output_roots() -> List[str]:
    import folder_paths

    return [folder_paths.get_output_directory()]


def lora_roots() -> List[str]:
    import folder_paths

    from .adapters import lora_output_folder

    try:
        folders = list(folder_paths.get_folder_paths("loras"))
    except KeyError:
        folders = []
    return folders or [lora_output_folder()]
