#!/usr/bin/env bash
# One-time set-up, safe to re-run: a virtual environment in .venv with torch (CPU build when no NVIDIA GPU
# is present, CUDA build otherwise), probe and its test tools, and Debian's chromium + chromedriver (static
# figure export and the browser tests need a Chrome; nothing is downloaded besides packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.probe-setup
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of torch"
    pip install "torch>=2.2"
  else
    # a CPU build: on this project's machines torch 2.13.0 lies on disk; elsewhere set TORCH_INDEX_URL to
    # https://download.pytorch.org/whl/cpu to avoid the large CUDA wheel
    echo "setup: no GPU: installing a CPU build of torch"
    pip install torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
fi
pip install -e ".[test]"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium and chromium-driver (figure export, browser tests)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: warning: no chromium found; PNG/SVG/PDF export and the browser tests need it (apt-get install chromium chromium-driver)" >&2
  fi
fi
touch "$stamp"
echo "setup: ready (.venv)"
