#!/usr/bin/env bash
# Runs the default (CPU) test suite. Extra arguments go to pytest, e.g. `-m slow`.
. "$(dirname "$0")/venv.sh"
python -m pytest -q "$@"
