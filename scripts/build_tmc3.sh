#!/usr/bin/env bash
# Build MPEG's G-PCC reference encoder/decoder `tmc3` (TMC13) from a source tree into
# build/tmc13/ of this checkout, where necgs's G-PCC codecs look first (then PATH).
# The source is not part of necgs and no package registry has it: pass its folder, or keep
# it at ../shared/third_party/mpeg-pcc-tmc13 beside the checkout (the default).
# Idempotent: does nothing when build/tmc13/tmc3/tmc3 is already built from that source.
# Usage: scripts/build_tmc3.sh [SRC]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
src=${1:-$root/../shared/third_party/mpeg-pcc-tmc13}
out=$root/build/tmc13
bin=$out/tmc3/tmc3

if [ ! -f "$src/CMakeLists.txt" ] || [ ! -f "$src/tmc3/CMakeLists.txt" ]; then
  echo "build_tmc3: no TMC13 source at $src; get it with" \
    "'git clone https://github.com/MPEGGroup/mpeg-pcc-tmc13' and pass its folder" >&2
  exit 1
fi
src=$(cd "$src" && pwd)
if [ -x "$bin" ] && [ "$(cat "$out/.source" 2>/dev/null)" = "$src" ]; then
  echo "build_tmc3: $bin is already built from $src"
  exit 0
fi
for tool in cmake g++ make; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build_tmc3: $tool is needed (Debian: apt-get install cmake g++ make)" >&2
    exit 1
  }
done
rm -rf "$out"
mkdir -p "$out"
log=$out/build.log
tree=$src
if [ ! -f "$src/scripts/genversion.cmake" ]; then
  # Some copies of TMC13 lack the script its build runs to stamp the version: build from a
  # tree of links to the source, with a stand-in that stamps the source's fallback version.
  tree=$out/source-links
  cp -rs "$src" "$tree"
  find "$tree" -type d -exec chmod u+w {} +
  printf '%s\n' '# Stand-in written by necgs scripts/build_tmc3.sh: stamp the fallback version.' \
    'set(VERSION "${VERSION_FALLBACK}")' 'configure_file("${TEMPLATE}" "${OUTPUT}")' \
    >"$tree/scripts/genversion.cmake"
fi
jobs=$(nproc 2>/dev/null || echo 2)
nice -n 10 cmake -S "$tree" -B "$out" -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1 ||
  { tail -n 20 "$log" >&2; exit 1; }
nice -n 10 cmake --build "$out" -j"$jobs" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
echo "$src" >"$out/.source"
echo "build_tmc3: built $bin"
