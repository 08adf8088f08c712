#!/usr/bin/env bash
# Pack the wheels the GPU host lacks (Python 3.12, manylinux x86_64) into two
# archives that each fit one device call (a call carries at most 64 MiB):
#   .whl/pack1.tar.xz  ray 2.60.0 (slim, stripped), av 19.0.2 (stripped),
#                      pynvvideocodec 2.2.4 (trimmed), Ray's small deps
#   .whl/pack2.tar.xz  lancedb 0.40.0 (stripped) and its small deps
# Each archive holds site/ (always installed) and fallback/ (installed only when
# the host cannot import that package already; bench/gpu.sh decides).
# Recipes and sizes: /work/shared/reference/gpu-host.md.  usage: bash bench/pack_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-/tmp/xclip_pack}
DEST=$PWD/.whl
PIP="$PY -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64"

PACK1_SITE="ray==2.60.0 av==19.0.2 pynvvideocodec==2.2.4 jsonschema jsonschema-specifications referencing rpds-py"
PACK1_FALLBACK="msgpack click protobuf aiosignal frozenlist"
PACK2_SITE="lancedb==0.40.0 pydantic annotated-types typing-inspection typing-extensions deprecation lance-namespace lance-namespace-urllib3-client"
PACK2_FALLBACK="overrides tqdm"

rm -rf "$WORK" && mkdir -p "$WORK/dl" "$DEST"

download() {  # download <dir> <specs...>
  local dir=$1; shift
  mkdir -p "$dir"
  for spec in "$@"; do $PIP -d "$dir" "$spec"; done
}

unpack() {  # unpack <wheel dir> <target>
  mkdir -p "$2"
  for w in "$1"/*.whl; do unzip -q -o "$w" -d "$2"; done
}

strip_libs() {  # strip every shared library and executable over 1 MB under $1
  find "$1" -type f \( -name "*.so*" -o -perm -u+x \) -size +1M -print0 |
    xargs -0 -r strip --strip-unneeded 2>/dev/null || true
}

download "$WORK/dl/p1" $PACK1_SITE
download "$WORK/dl/p1f" $PACK1_FALLBACK
# pydantic-core: the exact version pydantic pins
download "$WORK/dl/p2" $PACK2_SITE
PDC=$(unzip -p "$WORK"/dl/p2/pydantic-[0-9]*.whl '*/METADATA' | sed -n 's/^Requires-Dist: pydantic-core==\([0-9.]*\).*/\1/p' | head -1)
download "$WORK/dl/p2" "pydantic-core==$PDC"
download "$WORK/dl/p2f" $PACK2_FALLBACK

# --- pack1
S1=$WORK/p1/site F1=$WORK/p1/fallback
unpack "$WORK/dl/p1" "$S1"; unpack "$WORK/dl/p1f" "$F1"
rm -rf "$S1"/ray/jars "$S1"/ray/dashboard/client/build "$S1"/ray/rllib "$S1"/ray/serve "$S1"/ray/tune \
       "$S1"/ray/train "$S1"/ray/llm
for f in "$S1"/ray/_raylet.so "$S1"/ray/core/src/ray/gcs/gcs_server "$S1"/ray/core/src/ray/raylet/raylet; do
  [ -f "$f" ] && strip --strip-unneeded "$f"
done
strip_libs "$S1/av" ; strip_libs "$S1/av.libs"
# PyNvVideoCodec: drop its bundled FFmpeg source tarball, samples and benchmarks (top-level
# folders of its wheel); its libav*.so, .so.N and .so.N.M.P are identical copies -> symlinks
rm -rf "$S1"/samples "$S1"/benchmarks "$S1"/pynvvideocodec-*.data
for real in "$S1"/PyNvVideoCodec/lib*.so.*.*.*; do
  base=${real%.so.*}.so; major=${real%.*.*}
  for dup in "$base" "$major"; do
    if [ "$dup" != "$real" ] && [ -f "$dup" ] && [ ! -L "$dup" ] && cmp -s "$real" "$dup"; then
      ln -sf "$(basename "$real")" "$dup"
    fi
  done
done
find "$WORK/p1" -name "__pycache__" -prune -exec rm -rf {} +
(cd "$WORK/p1" && tar cf - site fallback | xz -T2 -6 > "$DEST/pack1.tar.xz")

# --- pack2
S2=$WORK/p2/site F2=$WORK/p2/fallback
unpack "$WORK/dl/p2" "$S2"; unpack "$WORK/dl/p2f" "$F2"
strip_libs "$S2/lancedb"; strip_libs "$S2/pydantic_core"
find "$WORK/p2" -name "__pycache__" -prune -exec rm -rf {} +
(cd "$WORK/p2" && tar cf - site fallback | xz -T2 -6 > "$DEST/pack2.tar.xz")

ls -l "$DEST"/pack1.tar.xz "$DEST"/pack2.tar.xz
for p in pack1 pack2; do
  size=$(stat -c %s "$DEST/$p.tar.xz")
  [ "$size" -le $((58 * 1024 * 1024)) ] || { echo "$p.tar.xz is $size bytes: over the ~55 MB a call can carry with the repo" >&2; exit 1; }
done
