#!/usr/bin/env bash
# The GPU check: the mT5-base and mT5-large train steps on one GPU, bfloat16 activations,
# inputs and targets of 1024 tokens, at the largest batch that fits (tried largest first),
# for each GPU attention path and the vocabulary-tiled loss on and off. Prints one JSON
# line per configuration (benchmarks/train_step.py, with a profile summary of the device
# ops) and copies them to $OUT. Sized to finish within 8 minutes (150 s per try at most).
#
#   bash benchmarks/gpu_check.sh            # on a machine with one H100 or H200
#
# gin-config (and tensorboardX) may be missing on a bare GPU image: wheels placed in
# .whl/ are installed to /tmp/site first.
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
try() { # model batch remat attention tile [extra XLA flags]
  local tiled=() name="$1_$2_$3_$4_tile$5"
  if [ "$5" != "off" ]; then tiled=(--vocab_tile_size "$5"); fi
  XLA_FLAGS="${6:-}" timeout 150 python3 benchmarks/train_step.py \
    --gin_file "models/mt5_$1.gin" --batch "$2" --inputs 1024 --targets 1024 \
    --dtype bfloat16 --remat "$3" --no_torch --steps 5 --warmup 2 "${tiled[@]}" \
    --gin_binding "MT5Config.attention_implementation='$4'" \
    --profile_dir "/tmp/profile_$name" --hlo_dump_dir "/tmp/hlo_$name" \
    2>"$out/stderr_$name.txt" | grep '^{' | tee -a "$out/gpu_check.jsonl"
  test "${PIPESTATUS[0]}" -eq 0
}
# The largest batch that fits, tried largest first: each attention path (xla, the
# reference; cudnn, the fused kernel with the relative bias), the loss over vocabulary
# tiles on (8192) and off. One JSON line per configuration (with a device profile).
for attention in cudnn xla; do
  for spec in "64 8192" "48 8192" "32 8192"; do try base ${spec%% *} none $attention ${spec##* } && break; done
done
for spec in "32 off" "16 off"; do try base ${spec%% *} none cudnn ${spec##* } && break; done
# QUICK=1: the base runs only (a short device lease).
if [ -z "${QUICK:-}" ]; then
  for spec in "32 full" "24 full" "16 full"; do try large $spec cudnn 8192 && break; done
  try large 16 full xla off
fi
