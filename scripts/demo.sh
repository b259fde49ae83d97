#!/usr/bin/env bash
# The main job: a prompt -> an .mp4 with the embedded default model (the trained toy-world model), on CPU
# unless told otherwise. --model tiny-demo picks the tiny random-weight model instead.
# Extra arguments go to `python -m hyvideo_core generate` (e.g. --frames 17 --out my.mp4).
. "$(dirname "$0")/venv.sh"
prompt="${PROMPT:-a red circle moving left slowly on a dark background}"
python -m hyvideo_core generate --prompt "$prompt" --out outputs/demo.mp4 "$@"
