#!/usr/bin/env bash
# The GPU checks of issue 10 as one script, for a session lent the GPU machine (../shared/device/README.md):
#   before, on a CPU: python -m pytest -m slow tests/test_gpu_settings.py tests/test_gpu_carry.py -n 2 --dist load
#          (the parts under the GPU's settings; this script cut and resumed across calls)
#   here:  python benchmarks/gpu_stage.py stage cifar10, then send each .devcarry piece (gpu_carry.py plan lists them);
#   there: source .devcarry/base/install.sh && bash benchmarks/gpu_session.sh [PART ...]
#          (carry .devcarry/base, and the state an earlier session left: `python benchmarks/gpu_carry.py plan` lists
#          the calls)
#   here, after each call: python benchmarks/gpu_carry.py collect FILES_AT   (the call's files_at); while it says
#          pieces of the state are still on the machine, at once: python3 benchmarks/gpu_carry.py more N
# PARTs, in the order of issue 10's priorities (default: bench prof xla exp:plain20):
#   bench  suite bench resnet20 on CIFAR-10: pipeline / model / end to end (host and device augmentation) / plain Keras
#   r20    experiments/resnet20.toml, unchanged (the paper's 64k iterations: 164 epochs of all 50k images)
#   r56    experiments/resnet56.toml;  plain  plain20.toml and plain56.toml (the degradation)
#   r50    suite bench resnet50 at 224² on synthetic data, with the torch.compile ResNet-50 beside it
#   steps  benchmarks/step_variants.py resnet20: the model step alone under the run's settings and variants of them
#          (float32, no weight decay, 128 steps per call, batch 256), side by side: where ResNet-20's step time goes
#   prof   benchmarks/step_profile.py resnet20: a profiler trace of 64 model steps and of a 128-step epoch of the
#          run, per step: host dispatch, kernels, device busy time and idle gaps, the costliest kernels: which bounds
#          the step
#   xla    the same step under XLA_FLAGS variants, a process each (CUDA graphs off; convolutions in them too): can
#          fewer kernel launches cut its per-step latency?
#   pbn    benchmarks/precise_bn_cost.py resnet20: eval.precise_bn's recomputation against an epoch's training steps,
#          under the GPU's settings (the files that validate recompute before each validation)
#   speed  experiments/cifar10_speedrun.toml (ResNet-9), seeds $SEEDS (default 0–4): mean accuracy and training
#          time (part 4)
#   exp:NAME  experiments/NAME.toml, unchanged (e.g. exp:nin exp:allcnn_c exp:vgg16_bn exp:densenet_bc100)
#   exp:NAME:KEY=VALUE,…  a variant of it, in a folder and row of its own (e.g. exp:nin:data.whiten=none)
# What comes back ($OUT, packed by benchmarks/gpu_carry.py after every part, within the tool's 8 files): session.log,
# rows.md (made by benchmarks/results_row.py from the finished runs: paste them into benchmarks/RESULTS.md
# unchanged), results.tgz (logs, bench JSON, finished runs' results, configs and event files) and state.tgz.N (the
# unfinished runs' training state, and which runs are finished; state.json lists its pieces, and those that do not
# fit wait in /tmp/carry-spill for `gpu_carry.py more`).
# BUDGET (seconds, default 540; a device call may run 600) bounds the whole call: set it to the session's device
# time left (status's budget_left_s) less 90 s when that is smaller. A run still going when it is spent gets
# SIGTERM, commits its training state and stops; the state goes back in state.tgz.N. Calling the script again
# resumes it and skips what has finished: on the still-warm machine from /tmp/suite-logs, on a fresh one (a later
# session) from the carried .devstate/ready. So a long part (r56: 164 epochs) can take several calls and sessions.
# EXTRA: arguments added to every `suite run` (for checking this script on a CPU; never in a reproduction).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; LOGS=${LOGS:-/tmp/suite-logs}; TXT=$LOGS/_text; mkdir -p "$OUT" "$TXT"
parts=${*:-bench prof xla exp:plain20}
BUDGET=${BUDGET:-540}; start=$(date +%s)
# JAX's persistent compilation cache: the speed run's seeds 1–4, a resumed run and a second call compile nothing
# the first process already compiled (same graph, other numbers), leaving more of the budget to training
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax-cache}
gpu=$(python3 -c "import jax; print(jax.devices()[0].device_kind)" 2>/dev/null || echo "?")
echo "device: $gpu · backend ${KERAS_BACKEND:-?} · parts: $parts · budget $BUDGET s" | tee -a "$TXT/session.log"
: > "$TXT/rows.md"  # this call's rows: every finished run of its parts
pack() { python3 benchmarks/gpu_carry.py pack "$LOGS" "$OUT"; }  # it writes its lines into session.log too
# what `gpu_carry.py collect` kept of an earlier session: the work call carries .devstate/ready/work, staging calls
# brought the send-N folders to /tmp/stage/state. An incomplete state stops the call before anything runs.
# .devstate/finished (carried too) marks the runs earlier calls finished, should their state not have come back.
STATE=${STATE:-.devstate/ready /tmp/stage/state}
python3 benchmarks/gpu_carry.py restore "$LOGS" $STATE --finished "${FINISHED:-.devstate/finished}" 2>&1 \
  | tee -a "$TXT/session.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { cp "$TXT/session.log" "$OUT/"; exit 2; }  # no pack: it would carry less back
X=${EXTRA:+ $EXTRA}  # the rows' commands say what ran

# timed LOG CMD...: CMD, its output into LOG, within what is left of BUDGET: SIGTERM at the end (a run commits and
# stops), SIGKILL 30 s later
timed() {
  local log=$1 left=$(( BUDGET - ($(date +%s) - start) )) rc
  shift
  if [ "$left" -le 30 ]; then echo "skipped, budget spent: $*" | tee -a "$TXT/session.log" >&2; return 124; fi
  timeout -k 30 -s TERM "$left" "$@" >> "$log" 2>&1; rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then  # the same parts again: a run resumes, a bench starts over
    echo "cut at the budget: $*" | tee -a "$TXT/session.log" >&2
  elif [ "$rc" -ne 0 ]; then  # said here, so the call's output shows it without unpacking the logs
    echo "failed (exit $rc): $* · $(tail -n 1 "$log")" | tee -a "$TXT/session.log" >&2
  fi
  return "$rc"
}

run_hash() {  # the run-folder suffix (config hash) of `suite run ARGS`: a run of an edited file is another run
  python3 -c '
import sys
from suite import cli, config, runner
a = cli.parser().parse_args(["run"] + sys.argv[1:])
print(runner.config_hash(config.resolve(a.target, a.set, cli.flag_overrides(a))))' "$@" 2>/dev/null || echo none
}

finished() {  # whether $LOGS holds a finished run of config hash $1
  compgen -G "$LOGS/*/*-$1/results.json" > /dev/null
}

run_exp() {  # experiment file $1 as run $2 (its folder under $LOGS; --set arguments after), unless a run of the
  local exp=$1 name=$2 args; shift 2  # same config finished here; RUN_HASH: that config's hash, for keep
  args=("$exp" --logdir "$LOGS" --set train.verbose=2 "$@" ${EXTRA:-})
  RUN_HASH=$(run_hash "${args[@]}")
  finished "$RUN_HASH" && { echo "$name: finished earlier, kept" | tee -a "$TXT/session.log"; return 0; }
  timed "$TXT/$name.txt" python3 -m suite run "${args[@]}"
}

once() {  # a bench ($1: its name) whose JSON is kept: a later call on this machine packs it again, not reruns it
  local name=$1; shift
  [ -f "$TXT/$name.json" ] || { : > "$TXT/$name.txt"; timed "$TXT/$name.txt" "$@" --json "$TXT/$name.json"; }
  tail -12 "$TXT/$name.txt"
}

keep() {  # keep NAME CMD FLAGS HASH...: the row of the finished runs under $LOGS/NAME of those configs (none while
  local exp=$1 cmd=$2 flags=$3 h d done=()  # none finished; runs of other configs, e.g. an older file's, stay out)
  shift 3
  for h in "$@"; do
    for d in "$LOGS/$exp"/*-"$h"/; do
      [ -f "$d/results.json" ] && done+=("$d")
    done
  done
  [ ${#done[@]} -gt 0 ] || return 0
  python3 benchmarks/results_row.py "${done[@]}" --command "$cmd" $flags 2>>"$TXT/session.log" | tee -a "$TXT/rows.md"
}

exp_part() {  # NAME or NAME:KEY=VALUE,… (a variant, in a folder and row of its own): run it, then its row
  local spec=$1 e=${1%%:*} name=${1%%:*} sets=() kv x
  if [ "$spec" != "$e" ]; then
    name="${e}__$(printf %s "${spec#*:}" | tr -c 'A-Za-z0-9._-' '_')"
    IFS=, read -ra kv <<< "${spec#*:}"
    for x in "${kv[@]}"; do sets+=(--set "$x"); done
    sets+=(--set "experiment.name=$name")
  fi
  run_exp "$e" "$name" "${sets[@]}"; keep "$name" "python -m suite run $e${sets[*]:+ ${sets[*]}}$X" "" "$RUN_HASH"
}

for part in $parts; do
  t0=$(date +%s)
  case $part in
    # two turns: single turns of one row differed by ~25 % between two calls on the H200 (2026-12-04); four
    # measured epochs: single epochs of one row spread 1.00–1.38 s there
    bench) once bench_resnet20 python3 -m suite bench resnet20 --data cifar10 --epochs 4 --repeat 2 ;;
    r20)   exp_part resnet20 ;;
    r56)   exp_part resnet56 ;;
    pbn)   [ -f "$TXT/precise_bn_cost.txt" ] && grep -q "share of an epoch" "$TXT/precise_bn_cost.txt" ||
             { : > "$TXT/precise_bn_cost.txt"; timed "$TXT/precise_bn_cost.txt" python3 benchmarks/precise_bn_cost.py \
                 resnet20 ${EXTRA:+--set data.name=digits}; }
           tail -4 "$TXT/precise_bn_cost.txt" | tee -a "$TXT/session.log" ;;
    steps) [ -f "$TXT/step_variants.txt" ] && grep -q "img/s" "$TXT/step_variants.txt" ||
             { : > "$TXT/step_variants.txt"  # (a CPU rehearsal, EXTRA set: digits, a few steps)
               small=(); [ -n "${EXTRA:-}" ] && small=(--data digits --steps 3 --repeat 1)
               timed "$TXT/step_variants.txt" python3 benchmarks/step_variants.py resnet20 --data cifar10 "${small[@]}"; }
           grep -E "img/s|turns" "$TXT/step_variants.txt" | tee -a "$TXT/session.log" ;;
    # done when the last lines are there (the flags, under the table): a part cut midway printed some rates already
    xla)   [ -f "$TXT/xla_flags.txt" ] && grep -q "XLA_FLAGS +=" "$TXT/xla_flags.txt" ||
             { : > "$TXT/xla_flags.txt"
               small=(); [ -n "${EXTRA:-}" ] && small=(--data digits --steps 3 --repeat 1)
               timed "$TXT/xla_flags.txt" python3 benchmarks/step_variants.py resnet20 --data cifar10 --xla --repeat 2 \
                 "${small[@]}"; }
           grep -E "img/s|turns|failed|XLA_FLAGS" "$TXT/xla_flags.txt" | tee -a "$TXT/session.log" ;;
    prof)  [ -f "$TXT/step_profile_run.json" ] ||  # the second profile's summary: both ran
             { : > "$TXT/step_profile.txt"  # whole traces stay on the machine; summaries and trimmed traces come back
               small=(); [ -n "${EXTRA:-}" ] && small=(--data digits --steps 4)
               for what in step run; do  # the run: 128 steps an epoch, 4 calls of 32, so that calls meet mid-epoch
                 flag=(); [ "$what" = run ] && flag=(--run --steps 128)
                 timed "$TXT/step_profile.txt" python3 benchmarks/step_profile.py resnet20 --data cifar10 "${flag[@]}" \
                   --out "$LOGS/_prof/$what" --json "$TXT/step_profile_$what.json" \
                   --events "$TXT/step_profile_$what.trace.json.gz" "${small[@]}" || break
               done; }
           grep -E "^resnet20|^  (wall|device)|→" "$TXT/step_profile.txt" | tee -a "$TXT/session.log" ;;
    plain) exp_part plain20; exp_part plain56 ;;
    r50)   [ -f /tmp/synth224.npz ] || python3 -c '
import numpy as np  # synthetic 224² images: ResNet-50 speed does not depend on what the pixels show
rng = np.random.default_rng(0)
np.savez("/tmp/synth224.npz", x_train=rng.integers(0, 256, (4096, 224, 224, 3), dtype=np.uint8),
         y_train=rng.integers(0, 1000, 4096), x_test=rng.integers(0, 256, (256, 224, 224, 3), dtype=np.uint8),
         y_test=rng.integers(0, 1000, 256))'
           once bench_resnet50 python3 -m suite bench resnet50 --data /tmp/synth224.npz --batch-size 256 --steps 15 \
             --epochs 2 ;;
    speed) hashes=()
           for s in ${SEEDS:-0 1 2 3 4}; do
             args=(cifar10_speedrun --logdir "$LOGS" --set train.seed=$s --set train.verbose=2 ${EXTRA:-})
             hashes+=("$(run_hash "${args[@]}")")
             finished "${hashes[-1]}" && continue
             timed "$TXT/speed_seed$s.txt" python3 -m suite run "${args[@]}" || break
           done
           keep cifar10_speedrun "python -m suite run cifar10_speedrun --set train.seed=S$X  # S = ${SEEDS:-0…4}" --speed \
             "${hashes[@]}" ;;
    exp:*) exp_part "${part#exp:}" ;;
    *) echo "unknown part $part" | tee -a "$TXT/session.log" ;;
  esac
  echo "$part: $(( $(date +%s) - t0 )) s" | tee -a "$TXT/session.log"
  pack  # after every part: a call killed at the device's own limit still returns what the parts before made
done
cat "$TXT/rows.md"
