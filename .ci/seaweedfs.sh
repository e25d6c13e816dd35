#!/usr/bin/env bash
# seaweedfs.sh: a real S3 server (SeaweedFS `weed mini`) on 127.0.0.1 for the
# S3 backend's tests. Learned on these machines: `go install` of SeaweedFS is
# refused (its go.mod has replace directives), so the module is downloaded and
# built in place (first build minutes, cached per machine); `weed mini` is ready
# once a signed PUT and GET round-trip, which is later than /healthz answers;
# without -s3.config any key is accepted; the region is not enforced.
#
#   .ci/seaweedfs.sh build        build the pinned version once per machine; print the binary path
#   .ci/seaweedfs.sh start [DIR]  build if needed, start weed mini, wait for a signed PUT+GET,
#                                 write DIR/env and print it
#   .ci/seaweedfs.sh stop [DIR]   SIGTERM the server started in DIR and remove its data
#
# DIR defaults to $DELTADB_S3_DIR or ${TMPDIR:-/tmp}/deltadb-seaweedfs-$UID. DIR/env holds
#   export DELTADB_S3_ENDPOINT=http://127.0.0.1:PORT
#   export DELTADB_S3_ACCESS_KEY=...  DELTADB_S3_SECRET_KEY=...  (random per start)
# which s3store_test.go reads (it skips without them, or fails when CI=true):
#   .ci/seaweedfs.sh start && . "${DELTADB_S3_DIR:-/tmp/deltadb-seaweedfs-$UID}/env" && go test ./...
#
# The binary lives in ${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/weed-$VERSION (override with
# DELTADB_WEED_BIN) and is built only if missing: `go install ...@version` is refused because
# the module's go.mod has replace directives, so the module is downloaded and built in place.
# A first build takes ~8 minutes and ~2 GB of module and build cache; later runs reuse it.
set -euo pipefail

VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs
BIN=${DELTADB_WEED_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/weed-$VERSION}
DIR=${2:-${DELTADB_S3_DIR:-${TMPDIR:-/tmp}/deltadb-seaweedfs-$UID}}

die() { echo "seaweedfs.sh: $*" >&2; exit 1; }

# wait_foreign_build waits while another process (a CI run, or a build started by
# hand) is running `go build -o $BIN`, so that the machine never builds twice.
wait_foreign_build() {
	local waited=0
	while pgrep -f -- "go build -o $BIN( |\$)" >/dev/null; do
		((waited % 60 == 0)) && echo "seaweedfs.sh: waiting for a running build of $BIN (${waited}s)" >&2
		sleep 5
		waited=$((waited + 5))
		((waited < 3600)) || die "a build of $BIN still runs after 1h"
	done
}

# build_weed makes sure $BIN exists, building it under a lock if not.
build_weed() {
	wait_foreign_build
	[[ -x $BIN ]] && return 0
	mkdir -p "$(dirname "$BIN")"
	exec 9>"$BIN.lock"
	flock 9
	wait_foreign_build
	if [[ ! -x $BIN ]]; then
		echo "seaweedfs.sh: building $MODULE@$VERSION into $BIN (first time only, several minutes)" >&2
		local tmp moddir
		tmp=$(mktemp -d)
		moddir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
		rm -rf "$tmp"
		[[ -d $moddir ]] || die "go mod download $MODULE@$VERSION gave no module directory"
		(cd "$moddir" && go build -o "$BIN.tmp.$$" ./weed)
		mv "$BIN.tmp.$$" "$BIN"
	fi
	flock -u 9
}

# free_port prints a TCP port nobody listens on; below 55535 because weed
# also binds port+10000 for gRPC.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# s3curl runs a SigV4-signed curl against the started server.
s3curl() {
	local hash=$1
	shift
	curl -fsS --max-time 5 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" \
		-H "x-amz-content-sha256: $hash" "$@"
}

# round_trip creates the probe bucket, PUTs an object and GETs it back.
round_trip() {
	local base=http://127.0.0.1:$PORT body empty
	body="ready $(date +%s%N)"
	empty=$(printf '' | sha256sum | cut -d' ' -f1)
	# 409 BucketAlreadyOwnedByYou on a second probe is fine: the PUT below decides.
	s3curl "$empty" -X PUT "$base/deltadb-ready" -o /dev/null 2>/dev/null || true
	s3curl "$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)" -X PUT --data-binary "$body" \
		"$base/deltadb-ready/probe" -o /dev/null 2>/dev/null || return 1
	[[ $(s3curl "$empty" "$base/deltadb-ready/probe" 2>/dev/null) == "$body" ]]
}

start() {
	build_weed
	if [[ -f $DIR/pid ]] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
		die "a server started in $DIR is still running (pid $(cat "$DIR/pid")); run: $0 stop $DIR"
	fi
	mkdir -p "$DIR/data"
	AK=ak$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
	SK=sk$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	PORT=$(free_port)
	# The master, volume and filer ports too: their defaults (9333, 8080,
	# 8888) are taken by a server another checkout's CI runs beside this one.
	local master_port volume_port filer_port
	master_port=$(free_port) volume_port=$(free_port) filer_port=$(free_port)
	# Without an -s3.config identity file any key would be accepted.
	umask 077
	printf '{"identities":[{"name":"ci","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","List","Tagging","Write"]}]}\n' \
		"$AK" "$SK" >"$DIR/s3.json"
	"$BIN" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$PORT" \
		-master.port="$master_port" -volume.port="$volume_port" -filer.port="$filer_port" \
		-s3.config="$DIR/s3.json" -webdav=false -admin.ui=false -s3.port.iceberg=0 \
		-s3.port.lance=0 -master.telemetry=false -master.volumeSizeLimitMB=64 \
		>"$DIR/weed.log" 2>&1 &
	echo $! >"$DIR/pid"
	local i
	for i in $(seq 1 120); do
		kill -0 "$(cat "$DIR/pid")" 2>/dev/null || die "weed exited; see $DIR/weed.log"
		if round_trip; then
			cat >"$DIR/env" <<EOF
export DELTADB_S3_ENDPOINT=http://127.0.0.1:$PORT
export DELTADB_S3_ACCESS_KEY=$AK
export DELTADB_S3_SECRET_KEY=$SK
EOF
			echo "seaweedfs.sh: S3 ready at http://127.0.0.1:$PORT after ${i}x0.5s (pid $(cat "$DIR/pid"), log $DIR/weed.log)" >&2
			cat "$DIR/env"
			return 0
		fi
		sleep 0.5
	done
	stop
	die "no signed PUT+GET round trip within 60s; see $DIR/weed.log"
}

stop() {
	[[ -f $DIR/pid ]] || { echo "seaweedfs.sh: nothing started in $DIR" >&2; return 0; }
	local pid i
	pid=$(cat "$DIR/pid")
	if kill -TERM "$pid" 2>/dev/null; then
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	rm -rf "$DIR/data" "$DIR/pid" "$DIR/env"
}

case ${1:-} in
build) build_weed && echo "$BIN" ;;
start) start ;;
stop) stop ;;
*) die "usage: $0 build | start [DIR] | stop [DIR]" ;;
esac
