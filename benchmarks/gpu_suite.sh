#!/usr/bin/env bash
# The GPU suite, prepared to run as is on a machine with an NVIDIA GPU (< 8 minutes):
#
#   bash benchmarks/gpu_suite.sh            # writes benchmarks/out/gpu_suite.json
#   OUT=/some/dir bash benchmarks/gpu_suite.sh --n 2000000   # extra args go to gpu_suite.py
#
# 1. installs the `gpu` extra (faiss-gpu-cu12) over faiss-cpu (both ship the `faiss`
#    module: the GPU build is reinstalled last so its files win), when pip can reach a
#    registry; otherwise it runs with what is installed and the JSON says what FAISS sees;
# 2. runs benchmarks/gpu_suite.py (stages: env, check GPU vs CPU, 10M x 512 synthetic data
#    made on the GPU, exact fp16 baseline, IVF-PQ batch-1024 QPS at recall@10 >= 0.95,
#    fp16 encoder pipeline / bare model, BLIP rerank cost per candidate) under a 470 s cap.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ "${SKIP_INSTALL:-0}" != "1" ]; then
  timeout 150 "$PY" -m pip install -q -e ".[gpu]" \
    && timeout 90 "$PY" -m pip install -q --force-reinstall --no-deps "faiss-gpu-cu12>=1.8" \
    || echo "gpu_suite: installing the gpu extra failed; running with what is installed" >&2
fi
"$PY" -c "import faiss; print('faiss', faiss.__version__, 'GPUs seen:', faiss.get_num_gpus())" || true
export OMP_WAIT_POLICY=PASSIVE
timeout 470 "$PY" benchmarks/gpu_suite.py --device cuda --out "$OUT/gpu_suite.json" "$@"
rc=$?
echo "gpu_suite: exit $rc, results in $OUT/gpu_suite.json"
exit $rc
