#!/usr/bin/env bash
# CI checks of deploy/ (issue 13): builds the image that go test's
# TestContainerQuickStart runs (tag from DELTADB_IMAGE). Everything listens
# on 127.0.0.1 only; everything started here is removed by name, also on
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DELTADB_IMAGE:?set DELTADB_IMAGE to the tag to build}"

start=$SECONDS
deploy/build-image.sh "$DELTADB_IMAGE"
echo "image $DELTADB_IMAGE built: $((SECONDS - start)) s"
