#!/usr/bin/env bash
# Humanoid learning curves side by side on one GPU (docs/TUNING.md E2-E4), optionally after an
# update-cost measurement alone on the GPU (E1). One device call, ~9.5 min, `carry [".wheels"]`,
# `timeout_s 600`, from the project root:
#
#   bash benchmarks/gpu_curves.sh COMMIT [--e1 "TRAIN_THROUGHPUT_ARGS"] NAME="TRAIN_PY_FLAGS" ...
#
# e.g. the second GPU session of 2026-11-26 (docs/BENCHMARKS.md) was, with the preset of that day:
#   bash benchmarks/gpu_curves.sh 09d0809 --e1 "--updates-only --reps 3 --repeats 2" \
#     p0="" p1="--batch-size 8192 --updates-per-iter 8 --gamma 0.97 ..."
#
# Each variant is one `gpu_check.py --phases curve` run of `train.py --env humanoid` with the
# preset plus its flags, or, when its flags start with `brax-ppo`, brax's PPO on the same task
# (`benchmarks/brax_ppo.py` with the rest of the flags: NAME="brax-ppo --num-envs 2048"). All
# start together and share the GPU (memory fraction 0.9 / variants), so compare them with each
# other, not with a run that had the GPU alone. At most 3 variants: only 8 files come back from
# $OUT (e1.json; per variant NAME_summary.md and NAME_curve.csv, or for brax NAME_log.txt and
# NAME_metrics.jsonl; curves.tgz with every log, metrics.jsonl, config.json, exported policy).
# CALL_END (default 560) is the second of the call by which the curves must stop: lower it by
# what the command ran before this script.
# A try on CPU (InvertedPendulum, tiny sizes; ~5 min on 2 cores): with the project's venv active,
#   CHECK_ARGS=--tiny OUT=/tmp/gc bash benchmarks/gpu_curves.sh test a="" b="--gamma 0.97"
set -u
commit=$1; shift
e1=""
if [ "${1:-}" = "--e1" ]; then e1=$2; shift 2; fi
[ $# -ge 1 ] && [ $# -le 3 ] || { echo "give 1 to 3 NAME=FLAGS variants" >&2; exit 2; }
out=${OUT:-/tmp/gpu_curves_out}
mkdir -p "$out"
# The GPU host lacks mujoco & co. (../shared/gpu/README.md); a development machine has them.
python3 -c "import mujoco" 2>/dev/null ||
  python3 -m pip install -q --no-index --no-deps --no-compile --target .site .wheels/*.whl
export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if [ -n "$e1" ]; then  # alone on the GPU; its three compiles take ~100 s on an H200
  timeout 130 python3 benchmarks/train_throughput.py --env humanoid $e1 --out "$out/e1.json" 2>&1 | tail -n 25
fi

left=$((${CALL_END:-560} - SECONDS))  # of the 600 s call, less ~40 s to stop, save and pack
export XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $#, 2))")
names=()
for variant in "$@"; do
  name=${variant%%=*}; flags=${variant#*=}; names+=("$name")
  mkdir -p /tmp/$name /tmp/${name}w
  if [ "${flags%% *}" = "brax-ppo" ]; then  # brax's PPO on the same task (benchmarks/brax_ppo.py)
    timeout $((left + 5)) python3 benchmarks/brax_ppo.py --env humanoid --time-box $((left - 30)) \
      --run-dir /tmp/${name}w/run ${flags#brax-ppo} > /tmp/$name.log 2>&1 &
  else
    timeout $((left + 5)) python3 benchmarks/gpu_check.py --phases curve --budget "curve=$left" \
      --out /tmp/$name --work /tmp/${name}w --keep-work --commit "$commit" \
      --curve-args "$flags" ${CHECK_ARGS:-} > /tmp/$name.log 2>&1 &
  fi
done
wait
for name in "${names[@]}"; do
  tail -n 4 /tmp/$name.log
  if [ -f /tmp/$name/summary.md ]; then
    cp /tmp/$name/summary.md "$out/${name}_summary.md"; cp /tmp/$name/curve.csv "$out/${name}_curve.csv"
  else
    cp /tmp/$name.log "$out/${name}_log.txt"; cp /tmp/${name}w/run/metrics.jsonl "$out/${name}_metrics.jsonl"
  fi
done
tar czf "$out/curves.tgz" --exclude=jax-cache --exclude=checkpoints -C /tmp \
  $(for n in "${names[@]}"; do echo $n ${n}w $n.log; done)
