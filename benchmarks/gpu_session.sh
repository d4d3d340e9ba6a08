#!/usr/bin/env bash
# The GPU checks of issue 10 as one script, for a session lent the GPU machine (../shared/device/README.md):
#   here:  bash ../shared/device/stage.sh cifar10, then send each .devcarry piece as that README says;
#   there: source .devcarry/base/install.sh && bash benchmarks/gpu_session.sh [PART ...]
# PARTs, in the order of issue 10's priorities (default: bench r20):
#   bench  suite bench resnet20 on CIFAR-10: pipeline / model / end to end (host and device augmentation) / plain Keras
#   r20    experiments/resnet20.toml, unchanged (the paper's 182 epochs)
#   r56    experiments/resnet56.toml;  plain  plain20.toml and plain56.toml (the degradation)
#   r50    suite bench resnet50 at 224² on synthetic data, with the torch.compile ResNet-50 beside it
#   speed  experiments/cifar10_speedrun.toml (ResNet-9), seeds 0–4: mean accuracy and training time (part 4)
# Everything comes back under $OUT: bench JSON, each run's results.json + config.json, and rows.md made by
# benchmarks/results_row.py from those results (paste them into benchmarks/RESULTS.md unchanged).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; LOGS=/tmp/suite-logs; mkdir -p "$OUT" "$LOGS"
parts=${*:-bench r20}
gpu=$(python3 -c "import jax; print(jax.devices()[0].device_kind)" 2>/dev/null || echo "?")
echo "device: $gpu · backend ${KERAS_BACKEND:-?} · parts: $parts" | tee -a "$OUT/session.log"

keep() {  # results and configs of the runs under $LOGS/$1, and their rows
  local exp=$1 cmd=$2
  for d in "$LOGS/$exp"/*/; do
    [ -f "$d/results.json" ] || continue
    mkdir -p "$OUT/runs/$exp/$(basename "$d")"
    cp "$d/results.json" "$d/config.json" "$OUT/runs/$exp/$(basename "$d")/"
  done
  python3 benchmarks/results_row.py "$LOGS/$exp"/*/ --command "$cmd" >> "$OUT/rows.md" 2>>"$OUT/session.log"
}

for part in $parts; do
  t0=$(date +%s)
  case $part in
    bench) python3 -m suite bench resnet20 --data cifar10 --epochs 2 --json "$OUT/bench_resnet20.json" \
             > "$OUT/bench_resnet20.txt" 2>&1; tail -12 "$OUT/bench_resnet20.txt" ;;
    r20)   python3 -m suite run resnet20 --logdir "$LOGS" --set train.verbose=2 > "$OUT/r20.txt" 2>&1
           keep resnet20 "python -m suite run resnet20" ;;
    r56)   python3 -m suite run resnet56 --logdir "$LOGS" --set train.verbose=2 > "$OUT/r56.txt" 2>&1
           keep resnet56 "python -m suite run resnet56" ;;
    plain) for e in plain20 plain56; do
             python3 -m suite run $e --logdir "$LOGS" --set train.verbose=2 > "$OUT/$e.txt" 2>&1
             keep $e "python -m suite run $e"
           done ;;
    r50)   python3 - <<'EOF'
import numpy as np  # synthetic 224² images: ResNet-50's speed does not depend on what the pixels show
rng = np.random.default_rng(0)
np.savez("/tmp/synth224.npz", x_train=rng.integers(0, 256, (4096, 224, 224, 3), dtype=np.uint8),
         y_train=rng.integers(0, 1000, 4096), x_test=rng.integers(0, 256, (256, 224, 224, 3), dtype=np.uint8),
         y_test=rng.integers(0, 1000, 256))
EOF
           python3 -m suite bench resnet50 --data /tmp/synth224.npz --batch-size 256 --steps 15 --epochs 2 \
             --json "$OUT/bench_resnet50.json" > "$OUT/bench_resnet50.txt" 2>&1
           tail -12 "$OUT/bench_resnet50.txt" ;;
    speed) for s in 0 1 2 3 4; do
             python3 -m suite run cifar10_speedrun --logdir "$LOGS" --set train.seed=$s --set train.verbose=2 \
               > "$OUT/speed_seed$s.txt" 2>&1
           done
           keep cifar10_speedrun "python -m suite run cifar10_speedrun --set train.seed=S  # S = 0…4"
           python3 benchmarks/results_row.py "$LOGS/cifar10_speedrun"/*/ --command speed --speed 2>>"$OUT/session.log" \
             | tail -1 | tee -a "$OUT/rows.md" ;;
    *) echo "unknown part $part" | tee -a "$OUT/session.log" ;;
  esac
  echo "$part: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/session.log"
done
[ -f "$OUT/rows.md" ] && cat "$OUT/rows.md"
