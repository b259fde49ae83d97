#!/usr/bin/env bash
# The main job: a prompt -> an .mp4 with the embedded default model, on CPU unless told otherwise.
# Extra arguments go to `python -m hyvideo_core generate` (e.g. --frames 17 --out my.mp4).
. "$(dirname "$0")/venv.sh"
prompt="${PROMPT:-a red circle moving left on a dark background}"
python -m hyvideo_core generate --prompt "$prompt" --out outputs/demo.mp4 "$@"
