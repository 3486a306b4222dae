# halo's watchdog, run inside a toolbox container as `bash watchdog.sh TOOL ARGS...` (the host's
# side is tether.py). `toolbox run` does not pass a signal on to the process it started: when
# the host's `toolbox run` is killed, the tool inside keeps running. What does reach the
# container is the end of stdin, so the tether holds our stdin open while the tool should run,
# and this script stops the tool (SIGTERM, then SIGKILL after a grace) when stdin closes.
#
# toolbox gives exit codes 125-127 its own meaning (126 and 125 become its error messages; 127
# becomes exit 0 when the command exists), so a tool's 125-127 is said here and returned as 1.
grace=${HALO_WATCHDOG_GRACE:-5}
tool=$1
if [ ! -x "$tool" ]; then
  echo "halo: $tool not found in this container" >&2
  exit 1
fi
exec 3<&0
"$@" </dev/null &
child=$!
cat <&3 >/dev/null &
reader=$!
exec 3<&-
wait -n "$child" "$reader"
if kill -0 "$child" 2>/dev/null; then
  # stdin closed: halo let go of the tool
  kill -TERM "$child" 2>/dev/null
  for _ in $(seq $((grace * 10))); do
    kill -0 "$child" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$child" 2>/dev/null
else
  kill "$reader" 2>/dev/null
fi
wait "$child"
code=$?
if [ "$code" -ge 125 ] && [ "$code" -le 127 ]; then
  echo "halo: $tool exited with code $code" >&2
  exit 1
fi
exit "$code"
