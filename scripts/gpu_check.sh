#!/usr/bin/env bash
# On a machine with a CUDA GPU (run from the repository root, after the README's install command):
#   bash scripts/gpu_check.sh
# 1. the CUDA-only tests (marked gpu; skipped everywhere else), 2. every field trained at bf16 against fp32 on
# the GPU, two seeds each (scripts/bench_strategies.py: score difference and training-time ratio), and the
# data-parallel comparison over NCCL when there are two GPUs or more. About 10 minutes on one H100-class GPU;
# the table is written to gpu_check.md.
set -euo pipefail
python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device here (torch " + torch.__version__ + "); this check needs a GPU")
print("gpu_check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
python -m pytest -q -m gpu -n 0 tests
compare=precision
if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then compare=precision,nproc; fi
python scripts/bench_strategies.py --device cuda --fields digits,vision,text,recsys,bio,llm --compare "$compare" \
  --seeds 2 --out gpu_check.md
