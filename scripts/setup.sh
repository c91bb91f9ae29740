#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh Debian machine, run as root from the checkout:
# system libraries (open3d needs libusb, polyscope's EGL needs Mesa, the browser test needs
# Debian chromium), a virtual environment in .venv, and the pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.necgs-setup-done
if [ -f "$stamp" ] && [ "$stamp" -nt requirements.txt ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    libusb-1.0-0 libgomp1 libegl1 libgl1 libglx-mesa0 libegl-mesa0 chromium >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e .
touch "$stamp"
