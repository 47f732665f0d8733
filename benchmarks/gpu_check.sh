#!/usr/bin/env bash
# The GPU check, one prepared script for one H100 or H200 (typically 6-9 minutes; each
# step below is capped, so at most 17; QUICK=1 about 5):
#
# 1. Numbers first (benchmarks/cudnn_check.py, ~1 minute): at dropout 0 the cudnn path's
#    output and its gradients for q, k, v and the relative bias equal xla's within
#    bfloat16 tolerance, packed and unpacked; at dropout 0.1 its backward pass applies
#    the forward's mask, kept weights are rescaled, and masks change from call to call
#    and from layer to layer. The speed rows run only if every check passes.
# 2. MFU rows (benchmarks/train_step.py): mT5-base (batch 32, no remat) and mT5-large
#    (batch 16, full remat), bfloat16, inputs and targets of 1024 tokens, the tiled loss
#    (8192 columns), at dropout 0.1 (the recipe) and 0, cudnn against xla; one JSON line
#    per row. Each row is capped at 100 s (a row that runs out of memory or time prints
#    nothing and the script goes on); the rows run in order of importance.
#
#   bash benchmarks/gpu_check.sh            # QUICK=1: the numbers and the base rows only
#
# Everything printed is also copied to $OUT (gpu_check.jsonl, cudnn_check.jsonl, stderr
# of each run). gin-config (and tensorboardX) may be missing on a bare GPU image: wheels
# placed in .whl/ are installed to /tmp/site first.
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"

timeout 240 python3 benchmarks/cudnn_check.py 2>"$out/stderr_cudnn_check.txt" \
  | tee "$out/cudnn_check.jsonl"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  echo "cudnn_check failed (see cudnn_check.jsonl and stderr_cudnn_check.txt): no speed rows"
  exit 1
fi

row() { # model batch remat attention dropout
  local name="$1_$2_$3_$4_dropout$5"
  timeout 100 python3 benchmarks/train_step.py \
    --gin_file "models/mt5_$1.gin" --batch "$2" --inputs 1024 --targets 1024 \
    --dtype bfloat16 --remat "$3" --no_torch --steps 3 --warmup 1 --vocab_tile_size 8192 \
    --gin_binding "MT5Config.attention_implementation='$4'" \
    --gin_binding "MT5Config.dropout_rate=$5" \
    2>"$out/stderr_$name.txt" | grep '^{' | tee -a "$out/gpu_check.jsonl"
  test "${PIPESTATUS[0]}" -eq 0 || echo "{\"row\": \"$name\", \"failed\": true}"
}
for dropout in 0.1 0.0; do
  for attention in cudnn xla; do row base 32 none $attention $dropout; done
done
if [ -z "${QUICK:-}" ]; then
  for dropout in 0.1 0.0; do
    for attention in cudnn xla; do row large 16 full $attention $dropout; done
  done
fi
