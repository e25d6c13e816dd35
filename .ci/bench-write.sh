#!/usr/bin/env bash
# bench-write.sh: durable PUT side by side in one run (BENCHMARKS.md, "The
# write-ahead log"). Each round runs every configuration once, in turn,
# each driven by this binary's -role=bench -ops=put at c=1 then c=32
# (1000 keys of ~1 KiB), then by wrk with .ci/wrk-put.lua (the same
# documents and keys) at c=1 then c=32, a fresh storage directory per
# configuration. WRK=0 leaves wrk out.
# Configurations:
#   raw       the raw per-file durable sequence, no server
#             (-role=bench -ceiling=fsync)
#   this      -role=all of this tree (the default server: log and change
#             feed)
#   NAME      -role=all of the commit REVS names NAME (NAME=COMMIT ...;
#             default before=e822b52, main before the write-ahead log)
# Each server line adds the server's CPU time per PUT (µs), the load
# generator's (the load tool's or wrk's) and the share of the machine's
# two cores left idle or waiting on the disk meanwhile (idle=%), which
# says whether the phase was bound by the CPU or by waits; wrk's lines
# are "NAME wrk c=N ops/s=... p50=... p99=... non2xx=...".
# Usage: [CONFIGS="raw before this"] [REVS="before=e822b52 ..."] [PORT=18171] .ci/bench-write.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-4}
configs=${CONFIGS:-raw before this}
revs=${REVS:-before=e822b52}
work=$(mktemp -d)
trap 'pkill -P $$ || true; for r in $revs; do git worktree remove --force "$work/src-${r%%=*}" 2>/dev/null || true; done; rm -rf "$work"' EXIT
go build -o "$work/ddb" .
for r in $revs; do
  name=${r%%=*}
  case " $configs " in *" $name "*) ;; *) continue ;; esac
  git worktree add -f --detach "$work/src-$name" "${r#*=}" >/dev/null 2>&1
  (cd "$work/src-$name" && go build -o "$work/ddb-$name" .)
done
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
port=${PORT:-18171}
addr=127.0.0.1:$port
wait_up() { for _ in $(seq 200); do curl -fs -o /dev/null "http://$1/health" && return 0; sleep 0.1; done; return 1; }
# cpu PID: the CPU time the process has used, in clock ticks
cpu() { cut -d' ' -f14,15 "/proc/$1/stat" | awk '{print $1 + $2}'; }
# per_put TICKS N: CPU time per request, µs
per_put() { awk -v d="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", d * 1e6 / hz / n}'; }
# idle_ticks: the machine's idle and iowait ticks, then all of its ticks
idle_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t}' /proc/stat; }
# idle_pct "I0 T0" "I1 T1": the share of the machine idle in between, %
idle_pct() { echo "$1 $2" | awk '{printf "%.0f", ($3 - $1) * 100 / ($4 - $2)}'; }
# timed FILE CMD...: run CMD, its user+system CPU seconds in FILE
timed() { local f=$1; shift; local TIMEFORMAT='%U %S'; { time "$@" ; } 2>"$f"; }
# gen_per_put FILE N: the load generator's CPU time per request, µs (timed's
# line is the last of FILE, after anything the command wrote to stderr)
gen_per_put() { awk -v n="$2" 'END {printf "%.0f", ($1 + $2) * 1e6 / n}' "$1"; }

# one NAME: start configuration NAME, drive it at c=1 and c=32, stop it
one() {
  local name=$1 dir="$work/d-$RANDOM"
  if [ "$name" = raw ]; then
    mkdir -p "$dir"
    for c in 1 32; do
      local i0; i0=$(idle_ticks)
      local out; out=$("$work/ddb" -role=bench -ceiling=fsync -ceiling-dir="$dir" -concurrency=$c -duration="${secs}s")
      echo "raw $out idle=$(idle_pct "$i0" "$(idle_ticks)")%"
    done
    rm -rf "$dir"; return
  fi
  local bin="$work/ddb"; [ "$name" != this ] && bin="$work/ddb-$name"
  "$bin" -role=all -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -shared-fs="$dir" -log-level=warn 2>"$work/$name.log" &
  local pid=$!
  wait_up "$addr"
  for c in 1 32; do
    local c0; c0=$(cpu $pid)
    local i0; i0=$(idle_ticks)
    timed "$work/gen.time" "$work/ddb" -role=bench -target="http://$addr" -token="$ADMIN_KEY" -concurrency=$c -keys=1000 -duration="${secs}s" -ops=put >"$work/gen.out"
    local i1; i1=$(idle_ticks)
    local c1; c1=$(cpu $pid)
    local out; out=$(cat "$work/gen.out")
    local n; n=$(echo "$out" | sed -n 's/.*ops=\([0-9]*\).*/\1/p' | head -1)
    echo "$name $out server_cpu_us/put=$(per_put $((c1 - c0)) "$n") gen_cpu_us/put=$(gen_per_put "$work/gen.time" "$n") idle=$(idle_pct "$i0" "$i1")%"
  done
  [ "${WRK:-1}" = 0 ] || for c in 1 32; do
    local c0; c0=$(cpu $pid)
    local i0; i0=$(idle_ticks)
    timed "$work/gen.time" wrk -t$((c < 2 ? 1 : 2)) -c$c -d"${secs}s" --latency -s .ci/wrk-put.lua "http://$addr" >"$work/wrk.out"
    local i1; i1=$(idle_ticks)
    local c1; c1=$(cpu $pid)
    local n; n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    echo "$name wrk c=$c ops/s=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.out") p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out") p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out") non2xx=$(awk '/Non-2xx/ {n = $NF} END {print n + 0}' "$work/wrk.out") server_cpu_us/put=$(per_put $((c1 - c0)) "$n") gen_cpu_us/put=$(gen_per_put "$work/gen.time" "$n") idle=$(idle_pct "$i0" "$i1")%"
  done
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$dir"
}

echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  echo "# round $r"
  for name in $configs; do one "$name"; done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
