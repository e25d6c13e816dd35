#!/usr/bin/env bash
# prof-hop.sh: where a warm GET's CPU goes in -role=all and in main + 1
# worker, part by part, per GET (BENCHMARKS.md "The hop profiled beside
# -role=all"). Each round starts `all`, then main + 1 worker, as
# bench-read.sh does (access log on at info) with the profiler on the ops
# listener, drives one warm 1 KiB entity with wrk -t2 -c32, and from its
# 3rd second takes a CPU profile of SECONDS of every process, counting the
# requests served meanwhile (deltadb_http_requests_total). The table sums
# the rounds: µs of CPU per GET in each part (a part is every sample with
# a frame that matches it, so parts overlap where they nest).
# Usage: [PORT=18291] [OUT=dir] .ci/prof-hop.sh [ROUNDS] [SECONDS]
# (ROUNDS 0: only the table, of the profiles already in OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-8}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
trap 'pkill -P $$ || true' EXIT
[ "$rounds" = 0 ] || go build -o "$out/ddb" .
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
export DELTADB_JOIN_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d " \n")
port=${PORT:-18291}  # and the four after it
addr=127.0.0.1:$port
wait_up() { for _ in $(seq 200); do curl -fs -o /dev/null "http://$1/health" && return 0; sleep 0.1; done; return 1; }
wait_workers() { for _ in $(seq 200); do [ "$(curl -fs -H "Authorization: Bearer $ADMIN_KEY" "http://$1/admin/workers" | grep -o Available | wc -l)" = "$2" ] && return 0; sleep 0.1; done; return 1; }
served() { curl -fs "http://127.0.0.1:$((port + 3))/metrics" | awk '/^deltadb_http_requests_total/ {s += $NF} END {printf "%d", s}'; }

# one NAME ROUND: profile configuration NAME (all, main+1) under wrk
one() {
  local name=$1 r=$2 dir="$out/d-$RANDOM" pids=()
  local flags=(-rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -cluster-addr=127.0.0.1:$((port + 2))
    -ops-addr=127.0.0.1:$((port + 3)) -pprof -shared-fs="$dir" -log-level=info)
  case $name in
    all) "$out/ddb" -role=all "${flags[@]}" 2>"$out/$name.log" & pids+=($!) ;;
    main+1)
      "$out/ddb" -role=main "${flags[@]}" 2>"$out/$name.log" & pids+=($!)
      MASTER_KEY= "$out/ddb" -role=proc -worker-id=w1 -main-addr=127.0.0.1:$((port + 2)) -ops-addr=127.0.0.1:$((port + 4)) -pprof \
        -shared-fs="$dir" -log-level=info 2>"$out/$name-w1.log" & pids+=($!) ;;
  esac
  wait_up "$addr"
  if [ "$name" = main+1 ]; then wait_workers "$addr" 1; fi
  "$out/ddb" -role=bench -target="http://$addr" -token="$ADMIN_KEY" -concurrency=8 -keys=10 -duration=1s -ops=put,get >/dev/null
  wrk -t2 -c32 -d$((secs + 6))s -H "Authorization: Bearer $ADMIN_KEY" "http://$addr/entity/bench?key=k000001" >"$out/$r-$name.wrk" &
  local wrkpid=$! profs=()
  sleep 3
  local n0; n0=$(served)
  curl -fs -o "$out/$r-$name-main.pb.gz" "http://127.0.0.1:$((port + 3))/debug/pprof/profile?seconds=$secs" & profs+=($!)
  if [ "$name" = main+1 ]; then
    curl -fs -o "$out/$r-$name-worker.pb.gz" "http://127.0.0.1:$((port + 4))/debug/pprof/profile?seconds=$secs" & profs+=($!)
  fi
  wait "${profs[@]}"
  local n1; n1=$(served)
  wait "$wrkpid" || true
  echo "$r $name $((n1 - n0))" >>"$out/served"
  echo "# round $r $name: $((n1 - n0)) GETs profiled, wrk $(awk '/Requests\/sec/ {printf "%.0f", $2}' "$out/$r-$name.wrk") GET/s, load $(cut -d' ' -f1 /proc/loadavg)"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$dir"
}

if [ "$rounds" != 0 ]; then
  echo "# profiles in $out; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  : >"$out/served"
  for r in $(seq "$rounds"); do
    for name in all main+1; do one "$name" "$r"; done
  done
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# usec FILES GETS [pprof options]: µs per GET of the samples the options keep
usec() {
  local files=$1 gets=$2; shift 2
  # shellcheck disable=SC2086 # files is a list
  go tool pprof -top -nodefraction=0 -nodecount=1000000 "$@" $files 2>/dev/null |
    awk -v n="$gets" '/Showing nodes accounting for/ {v = $5; sub(",", "", v)
      if (v ~ /ms$/) { sub("ms", "", v); v /= 1000 } else if (v ~ /us$/) { sub("us", "", v); v /= 1e6 } else sub("s", "", v)
      printf "%.2f", v / n * 1e6; found = 1} END {if (!found) printf "0"}'
}
files() { ls "$out"/*-"$1".pb.gz | tr '\n' ' '; }
gets() { awk -v c="$1" '$2 == c {s += $3} END {print s}' "$out/served"; }
fa=$(files all-main); fm=$(files main+1-main); fw=$(files main+1-worker)
na=$(gets all); nm=$(gets main+1)
row() { # LABEL [pprof options]
  local label=$1; shift
  printf "| %s | %s | %s | %s |\n" "$label" "$(usec "$fa" "$na" "$@")" "$(usec "$fm" "$nm" "$@")" "$(usec "$fw" "$nm" "$@")"
}
bg='connReader..(backgroundRead|abortPendingRead|startBackgroundRead)$'
echo
echo "GETs profiled: all $na, main+1 $nm"
echo
echo "| part of a warm GET (µs per GET) | all | main of main+1 | worker |"
echo "|---|---:|---:|---:|"
row "the process, all of it"
row "net/http's connection goroutine" -focus='net/http\.\(\*conn\)\.serve$'
row "- outside our handler" -focus='net/http\.\(\*conn\)\.serve$' -ignore='restServer..ServeHTTP$'
row "-- the answer's write" -focus='checkConnErrorWriter.Write$'
row "-- the background read" -focus="$bg"
row "-- the rest of net/http (no runtime, no system calls)" -focus='net/http\.\(\*conn\)\.serve$' -ignore="restServer..ServeHTTP\$|Syscall6|$bg|^runtime\\.|gcWriteBarrier|memmove|memclr"
row "- our handler" -focus='restServer..ServeHTTP$'
row "-- the call on the stream" -focus='callLink..call$'
row "outside net/http's goroutines" -ignore='net/http\.\(\*conn\)\.serve$'
row "- gRPC's writer" -focus='loopyWriter..run$'
row "- gRPC's reader" -focus='http2Client..reader$|http2Server..HandleStreams$'
row "- the stream's receiver" -focus='callLink..receive$|callServer..receive$'
row "the frame link's reads and writes (in the call and the receivers)" -focus='frameReader..next$|frameServerConn..(Send|write)$|frameConn..send$'
row "the scheduler (mcall)" -focus='^runtime.mcall$'
row "allocation (mallocgc)" -focus='^runtime.mallocgc$'
row "the collector" -focus='gcBgMarkWorker|gcAssistAlloc$|bgsweep|bgscavenge'
row "all system calls" -focus='Syscall6$'

# The hop function by function (BENCHMARKS.md "The hop's two ends,
# function by function"): the worker's side of a warm GET on the frame
# link and the main worker's call and answer path. Each row of a table is
# LABEL|A|B: the samples with a frame matching A and none matching B, or
# with B prefixed by "&", those with frames matching both A and B (A's
# total less A without B).
table() { # TITLE FILES GETS, rows on stdin
  local title=$1 files=$2 gets=$3 label a b
  printf "\n| %s, µs per GET | |\n|---|---:|\n" "$title"
  while IFS='|' read -r label a b; do
    local v
    if [ "${b#&}" != "$b" ]; then
      v=$(awk -v x="$(usec "$files" "$gets" -focus="$a")" -v y="$(usec "$files" "$gets" -focus="$a" -ignore="${b#&}")" 'BEGIN {printf "%.2f", x - y}')
    else
      v=$(usec "$files" "$gets" -focus="$a" ${b:+-ignore="$b"})
    fi
    printf "| %s | %s |\n" "$label" "$v"
  done
}
table "the worker's side" "$fw" "$nm" <<'ROWS'
the receiver (callServer.receive), all of it|callServer..receive$|
- reading a frame (frameServerConn.RecvMsg)|frameServerConn..RecvMsg$|
-- of which the read system call|frameServerConn..RecvMsg$|&Syscall6$
-- of which TLS's decryption|frameServerConn..RecvMsg$|&halfConn..decrypt$
- decoding the request (proto.Unmarshal)|callServer..next$|&proto.Unmarshal$
- admission (signature, order, replay)|workerServer..admit$|
-- of which the HMAC|callMAC..macOf$|
- the cache's check and lookup (worker.cached)|worker..cached$|
- counting the call (callServer.served)|callServer..served$|
- sending the answers (callServer.send)|callServer..send$|
-- encoding them (proto.Marshal)|callServer..send$|&MarshalAppend$
-- TLS's encryption|callServer..send$|&halfConn..encrypt$
-- the write system call|callServer..send$|&Syscall6$
the runtime waking sysmon on entering a system call|entersyscallWakeSysmon$|
the scheduler (mcall)|^runtime.mcall$|
ROWS
table "the main worker's call and answer path" "$fm" "$nm" <<'ROWS'
the call (callLink.call), all of it|callLink..call$|
- the seal (remoteWorker.seal)|remoteWorker..seal$|
- the frame's write (frameConn.send)|frameConn..send$|
-- of which the write system call|frameConn..send$|&Syscall6$
- the rest: queueing, the yield, the wait (select, parking)|callLink..call$|remoteWorker..seal$|frameConn..send$
the receiver (callLink.receive), all of it|callLink..receive$|
- reading a frame (frameReader.next)|frameReader..next$|
-- of which the read system call|frameReader..next$|&Syscall6$
- decoding the answers (proto.Unmarshal)|frameConn..recv$|&proto.Unmarshal$
- handing them on (callStream.deliver)|callStream..deliver$|
the router around the call (router.call less the call)|router..call$|callLink..call$
the runtime waking sysmon on entering a system call|entersyscallWakeSysmon$|
ROWS
