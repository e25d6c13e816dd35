#!/usr/bin/env bash
# Builds the DeltaDatabase container image: a static binary, the CA
# certificates and the storage directories (/data, and /shared/db linking
# to it) into deploy/out/, then `podman build` of deploy/Dockerfile.
#
#   deploy/build-image.sh [TAG]     (default localhost/deltadatabase:dev)
#
# podman needs the settings of .ci/containers.conf on some machines (runc,
# cgroupfs, no default ulimits: CONTAINERS_CONF=.ci/containers.conf);
# `docker` works too: CONTAINER_CLI=docker.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/deltadatabase:dev}"
cli="${CONTAINER_CLI:-podman}"
out=deploy/out

rm -rf "$out"
mkdir -p "$out/data" "$out/shared"
ln -s /data "$out/shared/db"
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out/deltadatabase" .
cp /etc/ssl/certs/ca-certificates.crt "$out/"
# The same binary, certificates and Dockerfile make the same image: when
# the tag already carries this context's hash, it is kept as it is.
sum=$( (cd "$out" && find . -type f | LC_ALL=C sort | xargs sha256sum && find . -type l -printf '%p -> %l\n' | LC_ALL=C sort; cat ../Dockerfile) | sha256sum | cut -c1-16)
if [ "$("$cli" image inspect --format '{{index .Config.Labels "deltadb.context"}}' "$tag" 2>/dev/null)" != "$sum" ]; then
  "$cli" build --quiet --label "deltadb.context=$sum" -t "$tag" -f deploy/Dockerfile "$out" >/dev/null
fi
echo "$tag"
