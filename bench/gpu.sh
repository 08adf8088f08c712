#!/usr/bin/env bash
# The end-to-end GPU benchmark, in two stages run as two consecutive device calls
# on a lent GPU host (Python 3.12, torch with CUDA; no ray/lancedb/av there):
#
#   bash bench/gpu.sh stage1   unpack .whl/pack1.tar.xz (ray, av, PyNvVideoCodec) into $SITE, check imports;
#                              the CUDA test files (NVDEC vs CPU clips and embeddings, model, encoder);
#                              the videos; node decode capacity without Ray (bench/nvdec_node.py: CPU
#                              decoders, NVDEC, both) at 360p and 720p; with GPUBENCH_AV19=1 also the
#                              PyAV 19 checks (decode digests vs bench/decode_digest_py311_av18.json, and
#                              the test files that need no lancedb or S3 server)
#   bash bench/gpu.sh stage2   unpack .whl/pack2.tar.xz (lancedb), then, each step with its own timeout,
#                              continuing on failure, within a total budget (GPUBENCH_BUDGET_S, 360 s):
#       videos       generate 360p and 720p H.264 videos (16 encoded in 16 processes, the rest hard
#                    links to them) + a random base-patch32 checkpoint
#       run_*        `python -m xclip_cli run` through real Ray: CPU decode only, NVDEC only, both
#                    (360p first, then 720p), clips/s from the run manifest, GPU busy fraction from
#                    nvidia-smi sampled every 500 ms
#       extra        steps other engineers append: $STEPS_EXTRA (default bench/gpu_steps_extra.sh),
#                    sourced with the `step` function below available
# Packs: bash bench/pack_wheels.sh. Logs, steps.jsonl and results.json go to $OUT (default bench/out).
# Generated data stays outside the repo ($GPUBENCH_DATA, default /tmp/gpubench).
# Local dry run (no GPU): GPUBENCH_SMALL=1 PY=.venv/bin/python bash bench/gpu.sh stage1 (then stage2)
#   tiny videos, CPU decoders / the CPU-decode run only, no unpacking, no CUDA steps.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
cd "$(dirname "$0")/.."
STAGE=${1:-}
OUT=${OUT:-bench/out}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
SITE=${SITE:-/tmp/site}
DATA=${GPUBENCH_DATA:-/tmp/gpubench}
SMALL=${GPUBENCH_SMALL:-0}
BUDGET=${GPUBENCH_BUDGET_S:-360}
PY=${PY:-python3}
T0=$(date +%s)
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ "$SMALL" = 1 ] && export PYTHONPATH="$PWD"

left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

# step NAME TIMEOUT_S CMD...: log to $OUT/NAME.log, one JSON line to steps.jsonl; never aborts the script
step() {
  local name=$1 limit=$2; shift 2
  local rem; rem=$(left)
  if [ "$rem" -lt 15 ]; then
    echo "== $name: skipped (budget: ${rem}s left)"
    echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": \"budget\"}" >> "$OUT/steps.jsonl"
    return 0
  fi
  [ "$limit" -gt "$rem" ] && limit=$rem
  echo "== $name (timeout ${limit}s): $*"
  local s; s=$(date +%s%N)
  if declare -F "$1" >/dev/null; then  # a function of this script: run it in a child bash
    timeout -k 10 "$limit" bash -c '"$@"' _ "$@" > "$OUT/$name.log" 2>&1
  else
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  fi
  local rc=$?
  local dt; dt=$(awk "BEGIN { printf \"%.1f\", ($(date +%s%N) - $s) / 1e9 }")
  tail -n 6 "$OUT/$name.log" | sed 's/^/   | /'
  echo "   -> rc=$rc in ${dt}s"
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $dt}" >> "$OUT/steps.jsonl"
  return 0
}

unpack() {  # unpack PACK: site/ always; fallback/ packages only where the host cannot import them
  local pack=.whl/$1.tar.xz tmp=/tmp/xclip_$1
  [ -f "$pack" ] || { echo "missing $pack (bash bench/pack_wheels.sh; carry .whl)"; return 1; }
  rm -rf "$tmp" && mkdir -p "$tmp" "$SITE" && tar xJf "$pack" -C "$tmp" || return 1
  cp -a "$tmp/site/." "$SITE/"
  for d in "$tmp"/fallback/*; do
    local name; name=$(basename "$d")
    case "$name" in *.dist-info|*.libs) continue ;; esac
    local mod=$name; [ "$name" = google ] && mod=google.protobuf
    if ! PYTHONPATH= python3 -c "import $mod" 2>/dev/null; then
      echo "host lacks $mod: using the packed copy"
      cp -a "$d" "$SITE/"
      cp -a "$tmp"/fallback/"$name"*.dist-info "$tmp"/fallback/"$name".libs "$SITE/" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}

stage1() {
  if [ "$SMALL" = 1 ]; then  # local dry run: the plumbing only (tiny videos, CPU decoders)
    step videos 120 make_inputs
    step node_small 60 "$PY" bench/nvdec_node.py "$DATA/small" --processes 2 --seconds 3 --modes cpu
    return 0
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  step unpack1 120 unpack pack1
  step imports1 60 "$PY" -c "import ray, av, torch, PyNvVideoCodec as n; print('ray', ray.__version__, 'av', \
av.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'PyNvVideoCodec', n.__version__)"
  du -sh "$SITE"
  # first what only a GPU can show (pack1 is enough: no lancedb): NVDEC vs CPU pixels and embeddings,
  # then the node's decode capacity without Ray: CPU decoders, NVDEC, both at once
  [ "${GPUBENCH_SKIP_CUDA:-0}" = 1 ] || step cuda_tests 150 "$PY" -m pytest -q -p no:cacheprovider \
      tests/test_video_nvdec.py tests/test_model_cuda.py tests/test_preprocess.py tests/test_jobs_encoder_cuda.py
  step videos "${GPUBENCH_VIDEOS_S:-120}" make_inputs
  for res in 360p 720p; do
    step "node_$res" 100 "$PY" bench/nvdec_node.py "$DATA/$res" --processes "$(nproc)" --decoders 8 \
        --seconds "${GPUBENCH_NODE_S:-15}"
  done
  [ "${GPUBENCH_AV19:-0}" = 1 ] || return 0
  # issue 7 on Python 3.12 + PyAV 19 (done on the H200 on 2026-11-27; GPUBENCH_AV19=1 reruns it):
  # the same clips as 3.11/PyAV 18, and the test files that need no lancedb/moto
  step digest 60 "$PY" bench/decode_digest.py --out "$OUT/decode_digest_host_py312_av19.json"
  step digest_compare 30 "$PY" bench/decode_digest.py --compare bench/decode_digest_py311_av18.json \
      "$OUT/decode_digest_host_py312_av19.json"
  step tests_av19 150 "$PY" -m pytest -q -p no:cacheprovider -k "not s3 and not S3" \
      tests/test_video_decode.py tests/test_video_errors.py tests/test_video_sampling.py \
      tests/test_jobs_decoder.py tests/test_preprocess.py tests/test_tokenizer.py tests/test_model_parity.py \
      tests/test_checkpoint.py tests/test_loading.py tests/test_labels.py tests/test_scoring.py \
      tests/test_jobs_assembler.py tests/test_jobs_config.py tests/test_jobs_encoder.py tests/test_schemas.py \
      tests/test_moderation_decide.py tests/test_jobs_gpu_decode.py tests/test_jobs_gpu_defaults.py
}

gen_videos() {  # gen_videos DIR WIDTH HEIGHT COUNT SECONDS
  "$PY" - "$@" <<'EOF'
import os
import sys
from multiprocessing import Pool
from pathlib import Path

from xclip_core.video.synth import write_video

root, w, h, n, secs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
root.mkdir(parents=True, exist_ok=True)

DISTINCT = 16  # encode at most this many (one per process); the rest are hard links to them: a
               # decode costs the same on a copy, and encoding 720p on the host took most of a budget

def one(i):
    p = root / f"v{i:04d}.mp4"
    if not p.exists():
        tmp = root / f".tmp{i:04d}.mp4"
        write_video(tmp, num_frames=int(secs * 30), width=w, height=h, fps=30, gop=60)
        tmp.rename(p)
    return p

with Pool(16) as pool:
    made = pool.map(one, range(min(n, DISTINCT)))
for i in range(len(made), n):
    p = root / f"v{i:04d}.mp4"
    if not p.exists():
        os.link(made[i % len(made)], p)
print(n, "videos in", root, f"({len(made)} encoded, the rest hard links)")
EOF
}

make_inputs() {
  if [ "$SMALL" = 1 ]; then
    gen_videos "$DATA/small" 160 120 4 4
  else
    gen_videos "$DATA/360p" 640 360 "${GPUBENCH_N360:-128}" "${GPUBENCH_S360:-40}"
    gen_videos "$DATA/720p" 1280 720 "${GPUBENCH_N720:-64}" "${GPUBENCH_S720:-30}"
  fi
  "$PY" -c "from xclip_core.checkpoint import write_random_checkpoint as w; \
print(w('$DATA/ckpt', preset='${GPUBENCH_PRESET:-base-patch32}'))"
}

# run_job NAME INPUT_DIR NVDEC_SHARE: one indexing run, GPU sampled in the background
run_job() {
  local name=$1 input=$2 share=$3 smi=""
  rm -rf "$DATA/out/$name"; mkdir -p "$DATA/out"
  if [ "$share" = auto ]; then : > "$DATA/$name.toml"; else
    printf '[decoder]\nnvdec_share = %s\n' "$share" > "$DATA/$name.toml"; fi
  if [ "$SMALL" != 1 ] && command -v nvidia-smi >/dev/null; then
    timeout 300 nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 500 \
        > "$OUT/$name.gpu.csv" &
    smi=$!
    trap 'kill $smi 2>/dev/null' EXIT TERM
  fi
  "$PY" -m xclip_cli run --input "$input" --output "$DATA/out/$name" --model "$DATA/ckpt" \
      --config "$DATA/$name.toml" --run-id "$name" --no-compile --ray-address local  # a fresh local Ray
  local rc=$?
  [ -n "$smi" ] && kill "$smi" 2>/dev/null
  "$PY" - "$DATA/out/$name" "$name" "$OUT" <<'EOF'
import collections, json, sys
from pathlib import Path

import pyarrow.parquet as pq

out, name, res = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
m = json.loads((out / "runs" / f"{name}.json").read_text())
backends = collections.Counter()
for f in m.get("parquet_files", []):
    if "/videos" in f:
        t = pq.read_table(f)
        if "decode_backend" in t.column_names:
            backends.update(str(b) for b in t.column("decode_backend").to_pylist())
r = {"run": name, "clips_per_s": round(m["clips_per_s"], 2), "num_segments": m["num_segments"],
     "counts": m["counts"], "stage_seconds": {k: round(v, 2) for k, v in m["stage_seconds"].items()},
     "nvdec_share": m["decode_config"].get("nvdec_share"), "decode_backend": dict(backends),
     "encoder": {k: m["config"]["encoder"][k] for k in ("precision", "batch_size", "compile")}}
gpu = res / f"{name}.gpu.csv"
if gpu.exists():
    u = [float(x) for x in gpu.read_text().split() if x.strip().replace(".", "").isdigit()]
    busy = [x for x in u if x > 0]
    r["gpu_util_mean"] = round(sum(u) / len(u), 2) if u else None
    r["gpu_util_mean_nonidle"] = round(sum(busy) / len(busy), 2) if busy else None
    r["gpu_samples"] = len(u)
with open(res / "runs.jsonl", "a") as fh:
    fh.write(json.dumps(r) + "\n")
print(json.dumps(r))
EOF
  return $rc
}

stage2() {
  if [ "$SMALL" != 1 ]; then
    step unpack2 90 unpack pack2
    step imports2 60 "$PY" -c "import ray, av, lancedb, pyarrow; print('lancedb', lancedb.__version__)"
  fi
  step videos "${GPUBENCH_VIDEOS_S:-120}" make_inputs  # already there when stage1 ran on this machine
  if [ "$SMALL" = 1 ]; then
    step run_small_cpu 240 run_job small_cpu "$DATA/small" 0.0
  else
    for res in 360p 720p; do
      step "run_${res}_cpu" 90 run_job "${res}_cpu" "$DATA/$res" 0.0
      step "run_${res}_nvdec" 90 run_job "${res}_nvdec" "$DATA/$res" 1.0
      step "run_${res}_both" 90 run_job "${res}_both" "$DATA/$res" auto
    done
  fi
  local extra=${STEPS_EXTRA:-bench/gpu_steps_extra.sh}
  # shellcheck disable=SC1090
  [ -f "$extra" ] && { echo "== extra steps from $extra"; source "$extra"; }
}

summarise() {
  "$PY" - "$OUT" "$STAGE" "$T0" <<'EOF'
import json, sys, time
from pathlib import Path

out = Path(sys.argv[1])
def lines(name):
    p = out / name
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []
node = [json.loads(x) for p in sorted(out.glob("node_*.log")) for x in p.read_text().splitlines()
        if x.startswith('{"folder"')]  # bench/nvdec_node.py's JSON lines
r = {"stage": sys.argv[2], "seconds": round(time.time() - float(sys.argv[3]), 1), "steps": lines("steps.jsonl"),
     "runs": lines("runs.jsonl"), "node": node}
(out / "results.json").write_text(json.dumps(r, indent=1))
for x in node:
    print(f"node {x['folder']:>24} {x['mode']:>6}: {x['clips_per_s']:8.1f} clips/s")
for x in r["runs"]:
    print(f"{x['run']:>12}: {x['clips_per_s']:8.1f} clips/s  {x['num_segments']} clips  "
          f"GPU busy {x.get('gpu_util_mean')}% (non-idle {x.get('gpu_util_mean_nonidle')}%)  {x['decode_backend']}")
EOF
}

export OUT SITE DATA SMALL PY
export -f unpack gen_videos make_inputs run_job

case "$STAGE" in
  stage1) stage1 ;;
  stage2) stage2 ;;
  *) echo "usage: bash bench/gpu.sh stage1|stage2"; exit 2 ;;
esac
summarise
echo "== $STAGE done in $(( $(date +%s) - T0 ))s; results in $OUT/results.json"
