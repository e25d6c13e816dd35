#!/usr/bin/env bash
# CI checks of deploy/:
#  0. the module deploy/check: Kubernetes manifests and Compose files
#     against the binary (no cluster needed);
#  1. builds the image (tag from DELTADB_IMAGE) that go test's
#     TestContainerQuickStart runs README's quick start against;
#  2. runs deploy/compose/cluster.yaml (one main, two workers) under
#     podman-compose: both workers become Available, a PUT then a GET work.
# Everything listens on 127.0.0.1 only; everything started here is removed
# by name, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DELTADB_IMAGE:?set DELTADB_IMAGE to the tag to build}"

start=$SECONDS
(cd deploy/check && go vet ./... && staticcheck ./... && go test -count=1 ./...)
echo "deploy/check (Kubernetes manifests, Compose files): $((SECONDS - start)) s"

start=$SECONDS
deploy/build-image.sh "$DELTADB_IMAGE"
echo "image $DELTADB_IMAGE built: $((SECONDS - start)) s"

# hex prints n random bytes in hex.
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# The Compose cluster, as project ddbci$$ with fresh secrets on a free port.
project="ddbci$$"
compose_log="$(mktemp)"
export DDB_IMAGE="$DELTADB_IMAGE" DDB_WORKERS=2
export DDB_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export MASTER_KEY="$(hex 32)" ADMIN_KEY="$(hex 24)" DELTADB_JOIN_TOKEN="$(hex 32)"
compose() { podman-compose -p "$project" -f deploy/compose/cluster.yaml "$@" >>"$compose_log" 2>&1; }
cleanup() {
  compose down -v || true
  podman rm -f --ignore "${project}_main_1" "${project}_worker_1" "${project}_worker_2" >/dev/null || true
  podman volume rm -f "${project}_data" >/dev/null || true
  podman network rm -f "${project}_default" >/dev/null 2>&1 || true
  rm -f "$compose_log"
}
# fail prints what the cluster said (podman-compose's own output shows the
# secrets on its command lines: it is not printed) and stops.
fail() {
  echo "compose check: $*" >&2
  for c in main_1 worker_1 worker_2; do
    echo "-- podman logs ${project}_$c" >&2
    podman logs "${project}_$c" >&2 || true
  done
  exit 1
}
trap cleanup EXIT

start=$SECONDS
compose up -d || fail "podman-compose up failed"
ddb="http://127.0.0.1:$DDB_PORT"
auth="Authorization: Bearer $ADMIN_KEY"
available=0
# 3 minutes: CI runs this beside the race run, on a machine others share.
for _ in $(seq 1800); do
  available="$(curl -fsS "$ddb/admin/workers" -H "$auth" 2>/dev/null | jq '[.[] | select(.status == "Available")] | length' || echo 0)"
  [ "$available" = 2 ] && break
  sleep 0.1
done
[ "$available" = 2 ] || fail "$available of 2 workers Available after 3 minutes"
curl -fsS -X PUT "$ddb/entity/composedb" -H "$auth" -d '{"k1": {"n": 1}, "k2": {"n": 2}}' >/dev/null || fail "PUT failed"
for k in k1 k2; do
  got="$(curl -fsS "$ddb/entity/composedb?key=$k" -H "$auth")" || fail "GET $k failed"
  [ "$got" = "{\"n\":${k#k}}" ] || fail "GET $k = $got, want {\"n\":${k#k}}"
done
echo "compose cluster (main + 2 workers Available, PUT then GET): $((SECONDS - start)) s"
