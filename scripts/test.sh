#!/usr/bin/env bash
# Runs the default (CPU) test suite. Extra arguments go to pytest, e.g. `-m slow`.
. "$(dirname "$0")/venv.sh"
# The browser tests drive Debian's headless Chromium; install it once when we can (root + apt).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${HVS_NO_APT:-}" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: could not install chromium; browser tests will be skipped" >&2
fi
python -m pytest -q "$@"
