#!/bin/bash
# Stages 4-5 of the bundled checkpoint's training, as run on a lent GPU machine (model card): render and
# cache the training scenes on the machine's CPUs, train two recipes side by side on the GPU until a
# deadline (run A fine-tunes the bundled weights, stage 3's when it ran; run B starts from scratch), copy each checkpoint into
# $OUT as it is written. Run from the repository root: OUT=results LIMIT=555 bash apps/gpu/train_reference.sh
# (stage 5 was run A's output trained again by the command in the model card). On that machine, whose
# Python 3.12 lacked typer, rich and pydantic, .gpu/site held them (from the same wheels as .venv).
set -u
OUT=${OUT:?set OUT to a folder for the checkpoints and logs}
mkdir -p "$OUT"
T0=$(date +%s)
LIMIT=${LIMIT:-540}          # seconds this script may take in all
NTRAIN=${NTRAIN:-24000}
PY=${PY:-python3}
WORKERS=${WORKERS:-16}
export PYTHONPATH=$PWD/.gpu/site:$PWD PYTHONUNBUFFERED=1 COLUMNS=160
LE="$PY -m lagchand_edge"
D=${D:-/tmp/lagchand-gpu}; rm -rf $D; mkdir -p $D/runs/A $D/runs/B
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/device.txt; }
say "start"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> $OUT/device.txt 2>&1
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cpus', __import__('os').cpu_count())" | tee -a $OUT/device.txt
$LE data synth --out $D/val --num 300 --split val --seed 3 --workers 2 > $D/val.log 2>&1 &
$LE data synth --out $D/train --num $NTRAIN --split train --seed 1 --workers $WORKERS > $OUT/synth.log 2>&1 || { say "synth failed"; tail -20 $OUT/synth.log; exit 1; }
wait
say "synth done"
$LE data cache $D/train --split train --out $D/cache-train --workers $WORKERS >> $OUT/synth.log 2>&1 || { say "cache failed"; tail -20 $OUT/synth.log; exit 1; }
$LE data cache $D/val --split val --out $D/cache-val --workers 2 >> $OUT/synth.log 2>&1 || { say "val cache failed"; tail -20 $OUT/synth.log; exit 1; }
say "caches done"
# the budget counts training steps only: leave a fifth of the time for each epoch's validation
BUDGET=$($PY -c "print(round(max(0.3, 0.8 * ($T0 + $LIMIT - 50 - $(date +%s)) / 60), 2))")
say "training budget $BUDGET min per run"
COMMON="--data $D/cache-train --val-data $D/cache-val --epochs 500 --batch-size ${BATCH:-256} --schedule cosine --warmup 0.05
 --clip-grad 10 --bf16 --loss-weight heatmap=100 --loss-weight heatmap_2d=1000 --loss-weight aligned=200
 --budget-minutes $BUDGET --workers ${LOADERS:-6}"
$LE train $COMMON --init lagchand_edge/assets/lagchand_reference.safetensors --edge-from 0 --lr ${LR_A:-6e-4} --seed 5 \
  --out $D/runs/A/lagchand_reference.safetensors > $OUT/A.log 2>&1 &
$LE train $COMMON --lr ${LR_B:-1e-3} --seed 6 --out $D/runs/B/lagchand_reference.safetensors > $OUT/B.log 2>&1 &
copy() { for r in A B; do mkdir -p $OUT/$r; cp $D/runs/$r/lagchand_reference.safetensors $D/runs/$r/lagchand_reference.json $OUT/$r/ 2>/dev/null; done; }
while [ -n "$(jobs -r)" ]; do
  sleep 10; copy
  if [ $(date +%s) -gt $(( T0 + LIMIT - 20 )) ]; then say "deadline: stopping the runs"; kill $(jobs -p) 2>/dev/null; sleep 3; copy; break; fi
done
copy
say "done"; nvidia-smi 2>/dev/null --query-gpu=memory.used --format=csv,noheader >> $OUT/device.txt
