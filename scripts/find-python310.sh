#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter for the Lava environment, or explain and fail.
# Order: $LAVA_PYTHON, python3.10 on PATH, then pyenv's installed 3.10.x versions.
set -u
ok() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }
if [ -n "${LAVA_PYTHON:-}" ]; then
  if ok "$LAVA_PYTHON"; then echo "$LAVA_PYTHON"; exit 0; fi
  echo "LAVA_PYTHON=$LAVA_PYTHON is not a working Python 3.10 interpreter" >&2; exit 1
fi
if command -v python3.10 >/dev/null 2>&1 && ok python3.10; then command -v python3.10; exit 0; fi
roots=""
command -v pyenv >/dev/null 2>&1 && roots="$(pyenv root 2>/dev/null)"
roots="$roots ${PYENV_ROOT:-} $HOME/.pyenv"
for root in $roots; do
  for py in $(ls -d "$root"/versions/3.10*/bin/python3.10 2>/dev/null | sort -V -r); do
    if ok "$py"; then echo "$py"; exit 0; fi
  done
done
cat >&2 <<'MSG'
No Python 3.10 found for the Lava environment (lava-nc 0.10.0 and lava-dl 0.6.0 need exactly 3.10).
Install one, e.g. 'pyenv install 3.10.13' or your system's python3.10 package,
or point to one with: make lava-env LAVA_PYTHON=/path/to/python3.10
MSG
exit 1
