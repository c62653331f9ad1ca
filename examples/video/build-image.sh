#!/usr/bin/env bash
# Builds ion/video-example:local, the container form of this example's modules: Ion's runtime
# image (ion/runtime:local, `npm run images`) plus this folder's modules, their installed
# node_modules (npm ci --prefix examples/video first) and Ion's Node warm helper, laid out as
# in the repository (/opt/ion/examples/video, /opt/ion/sdk/node) so the modules' imports hold.
# No registry is used. Engine: ION_IMAGES_ENGINE=docker (default; DOCKER_HOST is honoured) or
# podman. Run the pipeline with: ion up -f examples/video/ion-container.yaml
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
engine="${ION_IMAGES_ENGINE:-docker}"
image="${ION_VIDEO_IMAGE:-ion/video-example:local}"
[ -d "$here/node_modules/@vladmandic/human" ] ||
  { echo "build-image: run 'npm ci --prefix examples/video' first" >&2; exit 1; }
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/ion/examples/video" "$stage/ion/sdk/node"
cp -a "$here/package.json" "$here/package-lock.json" "$here/modules" "$here/node_modules" "$stage/ion/examples/video/"
cp "$root/sdk/node/ion-warm.mjs" "$stage/ion/sdk/node/"
cat >"$stage/Containerfile" <<'CONTAINERFILE'
FROM ion/runtime:local
COPY ion /opt/ion
WORKDIR /opt/ion/examples/video
CONTAINERFILE
"$engine" build -q -t "$image" -f "$stage/Containerfile" "$stage"
echo "build-image: built $image with $engine"
