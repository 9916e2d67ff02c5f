#!/usr/bin/env bash
# The benchmarks' GPU part as one command for a lent device machine, run from the repo root:
# step cost on the trees and on 10 x 30M (ratios; fraction of the HBM copy bandwidth),
# compile time (one build each) and the CIFAR-10 CNN train step. JSON, report and log go to $OUT.
# The defaults fit in about 6 minutes; SIZES, MODELS (empty: none), ONLY and PARTS override them.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
name="$(date -I)-$(python3 -c 'import jax; print(jax.default_backend())')"
python3 -c 'import jax, optax, flax; print(jax.devices(), jax.__version__, optax.__version__, flax.__version__)'
python3 -m benchmarks.run_all --no-compat --compile-repeats 1 \
  --parts "${PARTS:-step_cost,compile_time,end_to_end}" \
  --sizes "${SIZES:-10x300000,100x30000,1000x3000,10x30000000}" \
  --models "${MODELS-cnn}" \
  --only "${ONLY:-phase_shift,with_phase_shift(adam),floor[phase_shift I/O],floor[I/O + history write],floor[I/O + changes]}" \
  --out "$out/$name.json" 2>&1 | tee "$out/$name.log"
