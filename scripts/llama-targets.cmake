# Included into llama.cpp's configure by scripts/ensure-llama-cpp (CMAKE_PROJECT_INCLUDE): when
# the whole tree is configured, every program halo does not run is left out of the default
# build, so `cmake --build .` compiles llama-bench, llama-server and the RPC worker (and the two
# tools halo's tests use) with only the libraries they link, not llama.cpp's ~20 other tools.
#
# The host-side libraries that do no tensor work (argument parsing, chat templates and JSON in
# llama-common, the HTTP server, multimodal preprocessing in mtmd) are compiled at -O1: they
# are 60% of the build's CPU time at -O3 and a third less at -O1, while ggml, its CPU backend and
# libllama (where the tokens are computed) keep -O3, and so does common/sampling.cpp (it walks
# the vocabulary once per token). llama-server's t/s on the smoke model was the same both ways
# (docs/benchmarking.md, "Building llama.cpp").
get_property(_halo_registered GLOBAL PROPERTY HALO_TARGETS_REGISTERED)
if(_halo_registered)
  return()  # (included again after every project() call: once is enough)
endif()
set_property(GLOBAL PROPERTY HALO_TARGETS_REGISTERED TRUE)

set(HALO_KEEP llama-bench llama-server ggml-rpc-server rpc-server llama-quantize llama-gguf-split)
set(HALO_HOST_SIDE llama-common mtmd server-context llama-server-impl cpp-httplib)

function(_halo_targets dir out)
  get_property(found DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _halo_targets("${sub}" more)
    list(APPEND found ${more})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

function(_halo_only_what_halo_runs)
  _halo_targets("${CMAKE_SOURCE_DIR}" targets)
  set(left_out "")
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE" AND NOT target IN_LIST HALO_KEEP)
      set_target_properties(${target} PROPERTIES EXCLUDE_FROM_ALL TRUE)
      list(APPEND left_out ${target})
    endif()
  endforeach()
  foreach(target IN LISTS targets)  # a left-out tool's own library (llama-cli-impl, ...)
    string(REGEX REPLACE "-impl$" "" tool "${target}")
    if(NOT tool STREQUAL target AND tool IN_LIST left_out)
      set_target_properties(${target} PROPERTIES EXCLUDE_FROM_ALL TRUE)
    endif()
  endforeach()
  foreach(target IN LISTS HALO_HOST_SIDE)
    if(TARGET ${target})
      target_compile_options(${target} PRIVATE -O1)  # (after the build type's -O3: it wins)
    endif()
  endforeach()
  if(TARGET llama-common)  # (a source's own options come after its target's)
    set_source_files_properties("${CMAKE_SOURCE_DIR}/common/sampling.cpp"
                                DIRECTORY "${CMAKE_SOURCE_DIR}/common"
                                PROPERTIES COMPILE_OPTIONS -O3)
  endif()
  list(LENGTH left_out n)
  message(STATUS "halo: building only ${HALO_KEEP} (${n} other programs left out); "
                 "-O1 for ${HALO_HOST_SIDE}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _halo_only_what_halo_runs)
