#!/usr/bin/env bash
# The run behind models/*-synth-gesture: generate the training, validation and fresh-user data with
# evrt.synth's realistic defaults, frame it once, train the five families at the same time on one GPU
# (or CPU), and score each model on the shipped test split, the validation users and the fresh users.
#
#   bash tools/train_zoo.sh WORKDIR        # WORKDIR/data (generated), WORKDIR/runs/<name>/ (checkpoints, logs)
#
# Environment (defaults = the zoo's run): USERS=104 (users 1..USERS, seed 7; the last VAL_USERS=4 are
# validation), FRESH_USERS=20 (users 501.., seed 99: never seen in training), WORKERS=16, DEVICE=cuda,
# BUDGET_S=540 (wall seconds for the whole script; training gets what generation leaves), EPOCHS=100
# (the time budget shortens it after epoch 1),
# LIMIT (smoke test: first N samples per split), PYTHON=python3.
# Then, on the machine with the repo: copy WORKDIR/runs to runs/zoo and run `python tools/make_zoo.py`.
set -u
WORK=${1:?usage: train_zoo.sh WORKDIR}
PY=${PYTHON:-python3}
USERS=${USERS:-104}; VAL_USERS=${VAL_USERS:-4}; FRESH_USERS=${FRESH_USERS:-20}; WORKERS=${WORKERS:-16}
DEVICE=${DEVICE:-cuda}; BUDGET_S=${BUDGET_S:-540}; EPOCHS=${EPOCHS:-100}
LIM=(); [ -n "${LIMIT:-}" ] && LIM=(--limit "$LIMIT")
T0=$(date +%s)
D=$WORK/data; R=$WORK/runs
mkdir -p "$D" "$R"
export OMP_NUM_THREADS=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
stamp() { echo "[train_zoo $(( $(date +%s) - T0 ))s] $*"; }

stamp "compile the generator's kernels once (numba cache) before the workers start"
$PY -c "from evrt.synth import SynthConfig, make_recording; make_recording(0, 1, 0, SynthConfig(duration=0.3, gap=0.1))" || exit 1

stamp "data: the shipped set (seed 2026, users 04-06) in the background; training users; fresh users"
$PY tools/make_synth_gestures.py --out "$D/shipped" --users 6 --first-user 4 --test-users 2 --seed 2026 \
    --gap 0.3 --theta 0.25 > "$D/shipped.log" 2>&1 &
SHIP=$!
$PY tools/train.py --generate "$USERS" --gen-seed 7 --gen-test-users "$VAL_USERS" --gen-theta 0.15,0.2,0.25 \
    --root "$D/train" --workers "$WORKERS" || exit 1
$PY tools/train.py --generate $((500 + FRESH_USERS)) --gen-first-user 500 --gen-seed 99 \
    --gen-test-users "$FRESH_USERS" --root "$D/fresh" --workers "$WORKERS" || exit 1
wait $SHIP || { cat "$D/shipped.log"; exit 1; }
tail -1 "$D/shipped.log"

stamp "frames: 2x128x128 T=16 (Spikformer, SDT, RTFormer), 3x64x64 T=8 (SpikingResformer), one count frame (CSDformer)"
$PY tools/train.py --prepare spikformer,spikingresformer,csdformer --root "$D/train" --fresh-root "$D/fresh" \
    --workers "$WORKERS" "${LIM[@]}" || exit 1

# batch sizes by GPU memory (activations: ~0.25-0.65 GB per clip for the T=16 / SpikingResformer models)
MEM=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
if [ "${MEM:-0}" -gt 100000 ]; then B_SDT=64 B_SPF=64 B_RTF=48 B_SRF=32; else B_SDT=40 B_SPF=40 B_RTF=32 B_SRF=16; fi
LEFT=$(( BUDGET_S - ($(date +%s) - T0) - 35 ))
MM=$($PY -c "print(round(max(0.5, $LEFT / 60 / 1.05), 2))")
stamp "training: $LEFT s left -> --max-minutes $MM per model (GPU memory ${MEM:-?} MiB)"
train() {   # name family args...
    local name=$1 fam=$2; shift 2
    $PY tools/train.py --family "$fam" --root "$D/train" --test-root "$D/shipped" --fresh-root "$D/fresh" \
        --cache-frames --val --device "$DEVICE" --seed 0 --threads 2 --tf32 --max-minutes "$MM" \
        --out "$R/$name" "${LIM[@]}" "$@" > "$R/$name.log" 2>&1 &
}
train spikformer spikformer --embed 128 --batch-size "$B_SPF" --epochs "$EPOCHS"
train sdt sdt --embed 128 --batch-size "$B_SDT" --epochs "$EPOCHS"
train rtformer rtformer --batch-size "$B_RTF" --epochs "$EPOCHS"
# SpikingResformer and CSDformer: two settings each, the better by validation accuracy is shipped
train spikingresformer spikingresformer --batch-size $(( B_SRF / 2 )) --epochs "$EPOCHS"
train spikingresformer-lr5 spikingresformer --batch-size "$B_SRF" --lr 5e-3 --epochs "$EPOCHS"
# whole-sample count frames hold ~10^5 events: scale them down so the calibrated quantisers start in range
train csdformer csdformer --in-scale 0.01 --epochs $(( EPOCHS * 6 ))
train csdformer-s003 csdformer --in-scale 0.003 --epochs $(( EPOCHS * 6 ))
# the linear contrast (ridge on 2x32x32 event-count maps) trained on the same training users, on spare cores
timeout $(( LEFT + 30 )) $PY - "$D" "$R/linear.json" > "$R/linear.log" 2>&1 <<'EOF' &
import json, sys
from pathlib import Path
from evrt.datasets import DVSGesture
from tools.make_zoo import linear_baseline
d = Path(sys.argv[1])
out = {}
for name in ("shipped", "fresh"):
    ds = DVSGesture(d / name, split="test")
    out[name] = linear_baseline(d / "train", [ds[i] for i in range(len(ds))])
    print(name, out[name]["accuracy"], flush=True)
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
EOF
wait
for f in "$R"/*.log; do echo "== $f"; grep -E "data:|time budget|time guard|epoch [0-9]+/|validation|fresh|done|Error|error" "$f" | tail -8; done
for s in train fresh shipped; do cp "$D/$s/synth_stats.json" "$R/synth_stats_$s.json" 2>/dev/null; done
$PY - "$R" <<'EOF'
import json, sys
from pathlib import Path
for p in sorted(Path(sys.argv[1]).glob("*/train_log.json")):
    l = json.loads(p.read_text())
    fr = l.get("fresh") or {}
    print(f"{p.parent.name:18s} epochs {l['epochs']:4d}  test {l['test_acc_device']:.3f}  val {l['val_acc']}  "
          f"fresh {fr.get('acc')} ({fr.get('correct')}/{fr.get('n')})  {l['train_s']}s")
EOF
stamp "done"
