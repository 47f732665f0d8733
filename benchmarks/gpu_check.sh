#!/usr/bin/env bash
# The GPU check: the mT5-base and mT5-large train steps on one GPU, bfloat16 activations,
# inputs and targets of 1024 tokens, at the largest batch that fits (tried largest first).
# Prints one JSON line per model (benchmarks/train_step.py, with a profile summary of the
# device ops) and copies them to $OUT.
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
try() { # model batch remat [extra XLA flags] [extra gin binding]
  local binding=()
  if [ -n "${5:-}" ]; then binding=(--gin_binding "$5"); fi
  XLA_FLAGS="${4:-}" timeout 240 python3 benchmarks/train_step.py \
    --gin_file "models/mt5_$1.gin" --batch "$2" --inputs 1024 --targets 1024 \
    --dtype bfloat16 --remat "$3" --no_torch --steps 5 --warmup 2 "${binding[@]}" \
    --profile_dir "/tmp/profile_$1_$2" --hlo_dump_dir "/tmp/hlo_$1_$2" \
    2>"$out/stderr_$1_$2_$3.txt" | grep '^{' | tee -a "$out/gpu_check.jsonl"
  test "${PIPESTATUS[0]}" -eq 0
}
for spec in "base 32 none" "base 16 none"; do try $spec && break; done
# Attention logits from bfloat16 queries and keys (float32 accumulation and output).
try base 32 none "" MT5Config.float32_attention_logits=False
# QUICK=1: the base runs only (a short device lease).
if [ -z "${QUICK:-}" ]; then
  for spec in "large 24 full" "large 16 full"; do try $spec && break; done
  # The same base step with cuBLAS for every matrix product instead of Triton's GEMMs.
  try base 32 none --xla_gpu_enable_triton_gemm=false
fi
