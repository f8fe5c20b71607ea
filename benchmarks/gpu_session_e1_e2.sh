#!/usr/bin/env bash
# One GPU session for docs/TUNING.md's E1 and E2 (~9.5 min on one H100/H200):
#   E1  SAVGO float32 vs bfloat16-scoring vs SAC update cost at the Humanoid preset's sizes
#       (train_throughput.py --updates-only: no env program, ~1-2 min);
#   E2  P0 (the preset, physics fast) and P1 (FastSAC-like) Humanoid curves, side by side on the
#       one GPU for the rest of the time (each process gets about half of it: compare the two
#       curves with each other, not with a run that had the GPU alone).
# Device call (carry [".wheels"], timeout_s 600), from the project root:
#   bash benchmarks/gpu_session_e1_e2.sh <commit>
# Results in $OUT (8 files at most come back): updates.json, p0_/p1_ summary.md and curve.csv,
# curve.png of both, and e2.tgz with every phase log, metrics.jsonl and config.json.
set -u
commit=${1:-unknown}
out=${OUT:-/tmp/gpu_session_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target .site .wheels/*.whl
export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# E1 (alone on the GPU): repeats kept small so the three compiles and timings fit its box.
timeout 130 python3 benchmarks/train_throughput.py --env humanoid --updates-only --reps 3 --repeats 2 \
  --out "$out/updates.json" 2>&1 | tail -n 25

# E2: both curves start together; each gets under half the GPU's memory.
P1="--batch-size 8192 --updates-per-iter 8 --gamma 0.97 --target-rate 0.125 --critic-layer-norm \
--alpha-init 0.001 --target-entropy 0 --adam-b2 0.95 --buffer-size 1048576 --tau-anneal-steps 5000000"
left=$((560 - SECONDS))  # seconds of the 600 s call still free, less ~40 s to pack
export XLA_PYTHON_CLIENT_MEM_FRACTION=.45
for run in p0 p1; do
  args=""; [ "$run" = p1 ] && args=$P1
  timeout $((left + 5)) python3 benchmarks/gpu_check.py --phases curve --budget "curve=$left" \
    --out /tmp/$run --work /tmp/${run}w --keep-work --physics fast --commit "$commit" \
    --curve-args "$args" > /tmp/$run.log 2>&1 &
done
wait
for run in p0 p1; do
  tail -n 15 /tmp/$run.log
  cp /tmp/$run/summary.md "$out/${run}_summary.md"; cp /tmp/$run/curve.csv "$out/${run}_curve.csv"
done
cp /tmp/p0/curve.png "$out/p0_curve.png"; cp /tmp/p1/curve.png "$out/p1_curve.png"
tar czf "$out/e2.tgz" --exclude=jax-cache --exclude=checkpoints -C /tmp p0 p1 p0w p1w p0.log p1.log
