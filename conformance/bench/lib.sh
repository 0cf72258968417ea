# shellcheck shell=bash
# Shared by the benchmark scripts: process accounting and cleanup of what a
# run started (PIDs in `pids`, PID files in $RUN, namespaces $P-<name>).

hwm() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# cleanup NAMESPACE...: stops the tracked processes, deletes the namespaces
# and their FRR state.
cleanup() {
  local p x
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep "${CLEANUP_GRACE:-0.3}"  # profilers wrapping a daemon need longer to write their data
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for p in "$RUN"/*.pid; do [ -e "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
  pids=()
  for x in "$@"; do
    ip netns del "$P-$x" 2>/dev/null || true
    rm -rf "/var/run/frr/$P-$x" "/etc/frr/$P-$x"
  done
  rm -f "$RUN"/*.pid
}
