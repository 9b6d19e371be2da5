#!/usr/bin/env bash
# Print the path of a Python 3.12 interpreter: $PYTHON if set, else python3.12 on PATH, else pyenv's 3.12.
set -euo pipefail
ok() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
for cand in "${PYTHON:-}" python3.12 "$(command -v pyenv >/dev/null && pyenv root)"/versions/3.12*/bin/python3.12 \
            "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
  [ -n "$cand" ] || continue
  if ok "$cand"; then command -v "$cand" || echo "$cand"; exit 0; fi
done
echo "error: no Python 3.12 found (megatron-core >= 0.17 needs it); set PYTHON=/path/to/python3.12" >&2
exit 1
