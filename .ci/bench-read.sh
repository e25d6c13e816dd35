#!/usr/bin/env bash
# bench-read.sh: warm GET side by side in one run (BENCHMARKS.md, "The read
# path"). Each round runs every configuration once, in turn, and drives it
# with two load tools: this binary's -role=bench (1000 keys of 1 KiB, GET
# phase only) and wrk (one key). Configurations:
#   trivial   a trivial net/http handler answering a 1 KiB document
#             (-role=bench -ceiling=http -ceiling-addr)
#   original  the original DeltaDatabase's main-worker (its own GET cache;
#             it has no access log), built from ORIG_SRC, a git repository
#   base      -role=all of commit BASE (default cf6a1c6), access log on
#   all       -role=all of this tree, access log on (info, to a file)
#   all-nofloor  the same with -gc-heap-floor=0 (Go's own GC pacing)
#   main+1    -role=main and one -role=proc of this tree, access log on;
#             each worker caches 1024 entities (-cache-size), as `all`
#             does by default: the load tool's 1000 keys stay warm (a
#             worker's default of 256 would make three reads in four miss)
#   base-main+1  the same of commit BASE
#   main+3    -role=main and three -role=proc of this tree (wrk's one key
#             has one owner; the load tool's keys spread over the three)
#   base-main+3  the same of commit BASE
# Usage: [CONFIGS="all main+1 ..."] [PORT=18191] .ci/bench-read.sh [ROUNDS] [SECONDS] [BASE]
set -Eeuo pipefail
# A failing command stops the run (set -e): say which, rather than stop
# without a word (-E: in the functions too), in the results (stdout) as
# well as on stderr, where the failing tool said why.
trap 'echo "# bench-read.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" | tee /dev/stderr' ERR
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-4}; base=${3:-cf6a1c6}
orig_src=${ORIG_SRC:-/work/.mirror/DeltaRule+DeltaDatabase/repo}
work=$(mktemp -d)
trap 'pkill -P $$ || true; git worktree remove --force "$work/src-base" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/ddb" .
configs=" ${CONFIGS:-trivial original base all main+1} "
# the base commit and the original are built only for a run that has
# them (the original's mirror need not be on the machine otherwise)
case $configs in *" base"*)
  git worktree add -f --detach "$work/src-base" "$base" >/dev/null 2>&1
  (cd "$work/src-base" && go build -o "$work/ddb-base" .) ;;
esac
case $configs in *" original "*)
  # only the Go sources: the mirror may lack the blobs of committed binaries
  git clone -q --no-checkout "$orig_src" "$work/orig"
  (cd "$work/orig" && git checkout HEAD -- go.mod go.sum cmd internal pkg api && go build -o "$work/orig-main" ./cmd/main-worker) ;;
esac
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
export DELTADB_JOIN_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d " \n")
port=${PORT:-18191}  # and the two after it (every role given all three: no default port of another run)
addr=127.0.0.1:$port
wait_up() { for _ in $(seq 200); do curl -fs -o /dev/null "http://$1/health" && return 0; sleep 0.1; done; return 1; }
wait_workers() { for _ in $(seq 200); do [ "$(curl -fs -H "Authorization: Bearer $ADMIN_KEY" "http://$1/admin/workers" | grep -o Available | wc -l)" = "$2" ] && return 0; sleep 0.1; done; return 1; }
# fail NAME WHAT: stop the run, saying what configuration NAME did not do,
# with its processes' last log lines
fail() {
  echo "# bench-read.sh: $1: $2" | tee /dev/stderr
  for f in "$work/$1".log "$work/$1"-w*.log; do [ -e "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done
  exit 1
}

# cpu PID...: the CPU time the processes have used, in clock ticks
cpu() { for p in "$@"; do cut -d' ' -f14,15 "/proc/$p/stat"; done | awk '{t += $1 + $2} END {print t}'; }

# load NAME PID...: both load tools against $addr; one line each, with the
# server processes' CPU time per request during the wrk run (µs; machine
# load changes it less than it changes the rate)
load() {
  local name=$1; shift
  # timeout: a request that never comes back (the tool has no deadline of
  # its own) stops the run with a line saying so, not a run that hangs
  timeout $((secs + 120)) "$work/ddb" -role=bench -target="http://$addr" -token="$ADMIN_KEY" -concurrency=32 -keys=1000 -duration="${secs}s" -ops=get | sed "s/^/$name bench /"
  local c0; c0=$(cpu "$@")
  wrk -t2 -c32 -d"${secs}s" --latency -H "Authorization: Bearer $ADMIN_KEY" "http://$addr/entity/bench?key=k000001" >"$work/wrk.out"
  local c1; c1=$(cpu "$@")
  local n; n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  echo "$name wrk ops/s=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.out") p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out") p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out") non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out") server_cpu_us/req=$(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}')"
}

# one NAME: start configuration NAME, load it, stop it
one() {
  local name=$1 dir="$work/d-$RANDOM" pids=()
  case $name in
    trivial) "$work/ddb" -role=bench -ceiling=http -ceiling-addr="$addr" >/dev/null & pids+=($!) ;;
    original) "$work/orig-main" -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -shared-fs="$dir" -master-key="$MASTER_KEY" -admin-key="$ADMIN_KEY" 2>"$work/$name.log" & pids+=($!) ;;
    base) "$work/ddb-base" -role=all -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -cluster-addr=127.0.0.1:$((port + 2)) -shared-fs="$dir" -log-level=info 2>"$work/$name.log" & pids+=($!) ;;
    all) "$work/ddb" -role=all -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -cluster-addr=127.0.0.1:$((port + 2)) -shared-fs="$dir" -log-level=info 2>"$work/$name.log" & pids+=($!) ;;
    all-nofloor) "$work/ddb" -role=all -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -cluster-addr=127.0.0.1:$((port + 2)) -shared-fs="$dir" -log-level=info -gc-heap-floor=0 2>"$work/$name.log" & pids+=($!) ;;
    main+[13]|base-main+[13])
      local bin="$work/ddb"; [ "${name#base-}" != "$name" ] && bin="$work/ddb-base"
      "$bin" -role=main -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -cluster-addr=127.0.0.1:$((port + 2)) -shared-fs="$dir" -log-level=info 2>"$work/$name.log" & pids+=($!)
      for w in $(seq "${name##*+}"); do
        MASTER_KEY= "$bin" -role=proc -worker-id=w$w -cache-size=1024 -main-addr=127.0.0.1:$((port + 2)) -shared-fs="$dir" -log-level=info 2>"$work/$name-w$w.log" & pids+=($!)
      done ;;
  esac
  if [ "$name" = trivial ]; then sleep 0.5; else wait_up "$addr" || fail "$name" "$addr answered no /health within 20 s"; fi
  case $name in *main+[13]) wait_workers "$addr" "${name##*+}" ||
    fail "$name" "not ${name##*+} workers Available within 20 s: $(curl -s -H "Authorization: Bearer $ADMIN_KEY" "http://$addr/admin/workers")" ;; esac
  load "$name" "${pids[@]}"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$dir"
}

echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  echo "# round $r"
  for name in $configs; do one "$name"; done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
