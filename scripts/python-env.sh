#!/usr/bin/env bash
# Creates build/python-venv (a venv over Debian's /usr/bin/python3 that sees the
# system's torch, numpy and pytest), installs the childtune package from this
# tree into it, offline, and prints the venv's interpreter. Idempotent: the
# package is rebuilt only when python/, setup.py or a header changed since the
# last install (a stamp file records the newest input).
#
#   py=$(./scripts/python-env.sh) && "$py" -m pytest tests/python
#
# Needs python3-venv python3-torch python3-numpy python3-pytest pybind11-dev
# python3-setuptools python3-wheel (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/build/python-venv
python=${CHILDTUNE_BASE_PYTHON:-/usr/bin/python3}

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv --system-site-packages "$venv" >&2
fi

stamp=$venv/childtune-installed
newest=$(find setup.py python include adapters/torch/include -type f -newer "$stamp" -print -quit 2>/dev/null || true)
if [[ ! -f "$stamp" || -n "$newest" ]]; then
  touch "$stamp.next"   # an input edited during the build is newer than this: rebuilt next time
  # MAX_JOBS: torch's ninja build; CI has 2 cores.
  MAX_JOBS=${MAX_JOBS:-2} "$venv/bin/python" -m pip install --no-build-isolation --no-deps --no-index \
    --disable-pip-version-check -q "$root" >&2
  mv "$stamp.next" "$stamp"
fi
echo "$venv/bin/python"
