#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh Debian machine, run as root from the checkout:
# system libraries (open3d needs libusb, polyscope's EGL needs Mesa, the browser test needs
# Debian chromium), a virtual environment in .venv, the pinned Python packages, and MPEG's
# G-PCC tool tmc3 when its source sits at ../shared/third_party/mpeg-pcc-tmc13 (cmake and g++
# from Debian; scripts/build_tmc3.sh, itself idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

tmc13=../shared/third_party/mpeg-pcc-tmc13
gpcc() {
  if [ -d "$tmc13" ]; then
    if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
      if command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null
      fi
    fi
    scripts/build_tmc3.sh "$tmc13"
  else
    echo "setup: G-PCC (tmc3) not built: put MPEG's TMC13 source" \
      "(git clone https://github.com/MPEGGroup/mpeg-pcc-tmc13) at $tmc13 or run scripts/build_tmc3.sh SRC"
  fi
}

stamp=.venv/.necgs-setup-done
if [ -f "$stamp" ] && [ "$stamp" -nt requirements.txt ] && [ "$stamp" -nt pyproject.toml ]; then
  gpcc
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
gpcc
