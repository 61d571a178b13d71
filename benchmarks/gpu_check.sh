#!/usr/bin/env bash
# The performance benchmarks on a CUDA machine, in well under 8 minutes; installs nothing.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        (default: gpu_check)
#
# Writes OUT_DIR/<name>.txt (the printed tables, with the machine's description) and OUT_DIR/<name>.csv:
#   tar_overhead_tiny   TAR presets vs off on the tiny models, float32, 16-256 frames
#   tar_overhead_full   full-size ModelScope UNet3D and VideoCrafter2 architectures (random weights) at their
#                       native latent size in float16, 16 and 64 frames
#   scaling             step time and peak memory vs frames, whole and frame-chunked (plus a PNG)
#   vs_freenoise        one pass (TAR off and on) vs FreeNoise windows at 64 frames (text only)
#   wan_step_full       the full-size Wan 2.1 1.3B transformer (random weights) in bfloat16 at 480x832, 81 and 161
#                       frames: one step with per-frame synopsis text against a plain prompt, time and peak memory
#   frame_tar           TAR (augment and blocks), recording and replacement on one Wan 2.1 self-attention layer at
#                       480x832 in bfloat16, 21 and 41 latent frames, against SDPA; tiny-wan forwards with TAR
# Each step has its own time limit, so one slow step cannot take the others' time.
set -u
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device; this script is for GPU machines')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1

step() {  # step NAME SECONDS ARGS...: one benchmark under a time limit, its output kept
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s)"
    timeout "$limit" "$PY" "$@" > "$OUT/$name.txt" 2>&1
    echo "   exit $? -> $OUT/$name.txt"
}

step tar_overhead_tiny 70 benchmarks/tar_overhead.py --device cuda --models tiny-modelscope toy-shapes \
    --frames 16 64 128 256 --rounds 5 --csv "$OUT/tar_overhead_tiny.csv"
step tar_overhead_full 130 benchmarks/tar_overhead.py --device cuda --dtype float16 --models \
    --full modelscope videocrafter2 --frames 16 64 --presets 64D1 64D1_32D8 --rounds 5 \
    --csv "$OUT/tar_overhead_full.csv"
step scaling 70 benchmarks/scaling.py --device cuda --frames 16 32 64 128 256 --rounds 3 --out "$OUT/scaling"
step vs_freenoise 50 benchmarks/vs_freenoise.py --device cuda --frames 64 --rounds 5
step wan_step_full 90 benchmarks/wan_step.py --device cuda --full --frames 81 161 --rounds 1 \
    --csv "$OUT/wan_step_full.csv"
step frame_tar 60 benchmarks/frame_tar_overhead.py --device cuda --full --dtype bfloat16 --frames 21 41 --rounds 1 \
    --csv "$OUT/frame_tar.csv"
echo "tables in $OUT/"
