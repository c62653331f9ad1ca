#!/usr/bin/env bash
# Builds Ion's container images without any registry (`npm run images`):
#
#   ion/runtime:local  Debian 12 minbase (debootstrap from the apt mirror) with sh, bash,
#                      python3, coreutils and this machine's `node` binary. Modules declared
#                      with a command and no image run in it.
#   ion/ion:local      ion/runtime:local plus Ion itself under /opt/ion (bin/, src/ without
#                      tests, package.json, the production part of node_modules) and `ion`
#                      on PATH, for `ion handler prepare|collect` in a Kubernetes pod.
#   ion/video-example:local  the runtime image plus examples/video (its modules and their
#                      node_modules), when `npm ci --prefix examples/video` has run.
#
# The debootstrapped base is cached as a tarball under $ION_IMAGES_CACHE (default
# ~/.cache/ion/images), keyed by RECIPE; the runtime rootfs is cached beside it, keyed by the
# recipe and the node binary. Each image carries a label `ion.image.key`: an image whose key
# matches is skipped, so a warm run only inspects. ion/ion's key hashes Ion's sources, so an
# edited checkout gets a fresh image. Nothing is pulled: the images are imported, and ion/ion
# is built FROM the runtime image with `--network none` and no RUN step (so no container
# runs during a build, and no runtime configuration is needed for it).
#
# Usage: scripts/images.sh [--engine podman|docker|all] [--force] [--help]
#   --engine  where to build: podman (its CLI, the machine's default storage), docker (each
#             reachable daemon: $DOCKER_HOST, else /var/run/docker.sock and
#             /run/ion-test/docker.sock), or all reachable (default; env ION_IMAGES_ENGINE).
#   --force   rebuild the images (and the cached base tarball) even when they are current.
# Concurrent runs are serialised by a lock in the cache directory.
set -euo pipefail

RECIPE=1 # bump when the base or runtime recipe below changes: every image is rebuilt
SUITE=bookworm
MIRROR=${ION_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${ION_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ion/images}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNTIME_IMAGE=ion/runtime:local
ION_IMAGE=ion/ion:local
PATH_IN_IMAGE=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

engine=${ION_IMAGES_ENGINE:-all}
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=${2:?--engine needs podman, docker or all}; shift 2 ;;
    --engine=*) engine=${1#--engine=}; shift ;;
    --force) force=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "images: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$engine" in podman | docker | all) ;; *) echo "images: --engine must be podman, docker or all, not '$engine'" >&2; exit 2 ;; esac

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
say() { echo "images: $*"; }
die() { echo "images: $*" >&2; exit 1; }
started_all=$(now)

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  say "waiting for another build (lock $CACHE/.lock)"
  flock 9
fi

# ---- engines --------------------------------------------------------------------------------
# Each target is "cli|DOCKER_HOST|label"; DOCKER_HOST is empty for podman.
targets=()
if [ "$engine" != docker ]; then
  if command -v podman >/dev/null && podman info >/dev/null 2>&1; then
    targets+=("podman||podman")
  elif [ "$engine" = podman ]; then
    die "podman is not installed or 'podman info' fails"
  fi
fi
if [ "$engine" != podman ]; then
  docker_cli=$(command -v docker || true)
  hosts=()
  if [ -n "${DOCKER_HOST:-}" ]; then
    hosts=("$DOCKER_HOST")
  else
    for sock in /var/run/docker.sock /run/ion-test/docker.sock; do
      [ -S "$sock" ] && hosts+=("unix://$sock")
    done
  fi
  for host in "${hosts[@]}"; do
    [ -n "$docker_cli" ] || break
    if timeout 10 "$docker_cli" -H "$host" version --format '{{.Server.Version}}' >/dev/null 2>&1; then
      targets+=("docker|$host|docker at $host")
    fi
  done
  if [ "$engine" = docker ] && [ ${#targets[@]} = 0 ]; then
    die "no docker daemon answers (tried: ${hosts[*]:-none}; docker CLI: ${docker_cli:-missing})"
  fi
fi
[ ${#targets[@]} -gt 0 ] || die "no container engine is reachable: install podman, or start dockerd and set DOCKER_HOST"

run_cli() { # target args...: runs the target's CLI
  local cli host
  IFS='|' read -r cli host _ <<<"$1"
  shift
  if [ "$cli" = docker ]; then DOCKER_HOST=$host DOCKER_BUILDKIT=0 docker "$@"; else podman "$@"; fi
}
image_key() { run_cli "$1" image inspect --format '{{index .Config.Labels "ion.image.key"}}' "$2" 2>/dev/null || true; }
image_id() { run_cli "$1" image inspect --format '{{.Id}}' "$2" 2>/dev/null || true; }
in_list() { local x; for x in "${@:2}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
label_of() { local label; IFS='|' read -r _ _ label <<<"$1"; echo "$label"; }

# ---- keys -----------------------------------------------------------------------------------
node_bin=$(readlink -f "$(command -v node)")
node_version=$("$node_bin" --version)
base_tar="$CACHE/base-$SUITE-minbase-r$RECIPE.tar"
runtime_key=$(printf '%s\n' "recipe=$RECIPE" "suite=$SUITE" "node=$node_version" \
  "$(stat -c '%s %Y' "$node_bin")" | sha256sum | cut -c1-16)
runtime_tar="$CACHE/runtime-$runtime_key.tar"

ion_sources() { # the files of Ion that go into ion/ion, relative to ROOT, sorted
  (cd "$ROOT" && find bin src -type f ! -name '*.test.ts' ! -name '*.test.tsx' | LC_ALL=C sort)
  echo package.json
  echo package-lock.json
}
# The key covers the runtime, every copied source file, and the lockfile (for node_modules).
ion_key=$( (
  echo "runtime=$runtime_key"
  cd "$ROOT" && ion_sources | xargs -d '\n' sha256sum
) | sha256sum | cut -c1-16)

# ---- which images are missing ---------------------------------------------------------------
need_runtime=()
need_ion=()
for t in "${targets[@]}"; do
  if [ $force = 1 ] || [ "$(image_key "$t" "$RUNTIME_IMAGE")" != "$runtime_key" ]; then need_runtime+=("$t"); fi
  if [ $force = 1 ] || [ "$(image_key "$t" "$ION_IMAGE")" != "$ion_key" ]; then need_ion+=("$t"); fi
done
for t in "${targets[@]}"; do
  in_list "$t" "${need_runtime[@]}" || say "$(label_of "$t"): $RUNTIME_IMAGE is current (key $runtime_key)"
  in_list "$t" "${need_ion[@]}" || say "$(label_of "$t"): $ION_IMAGE is current (key $ion_key)"
done
# ion/video-example:local (examples/video in containers) when the example's own dependencies
# are installed (`npm ci --prefix examples/video`); its build is a COPY onto the runtime
# image, so an unchanged one comes from the engine's build cache.
build_video_images() {
  if [ ! -d "$ROOT/examples/video/node_modules/@vladmandic/human" ]; then
    say "examples/video's dependencies are not installed: ion/video-example:local not built"
    return 0
  fi
  local t cli host t0 log
  log=$(mktemp)
  for t in "${targets[@]}"; do
    IFS='|' read -r cli host _ <<<"$t"
    t0=$(now)
    if ! if [ "$cli" = docker ]; then
      DOCKER_HOST=$host DOCKER_BUILDKIT=0 ION_IMAGES_ENGINE=docker "$ROOT/examples/video/build-image.sh"
    else
      ION_IMAGES_ENGINE=podman "$ROOT/examples/video/build-image.sh"
    fi >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      die "$(label_of "$t"): building ion/video-example:local failed (log above)"
    fi
    say "$(label_of "$t"): built ion/video-example:local in $(since "$t0")"
  done
  rm -f "$log"
}

if [ ${#need_runtime[@]} = 0 ] && [ ${#need_ion[@]} = 0 ]; then
  build_video_images
  say "Ion's images are current ($(since "$started_all"))"
  exit 0
fi

work=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- base: debootstrap, cached as a tarball ------------------------------------------------
if [ ${#need_runtime[@]} -gt 0 ] && { [ $force = 1 ] || [ ! -s "$runtime_tar" ]; }; then
  if [ $force = 1 ] || [ ! -s "$base_tar" ]; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root (to build $base_tar)"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    t0=$(now)
    say "base: debootstrap --variant=minbase --include=python3 $SUITE from $MIRROR ..."
    if ! debootstrap --variant=minbase --include=python3 "$SUITE" "$work/base" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
      tail -n 20 "$work/debootstrap.log" >&2
      die "debootstrap failed (log above)"
    fi
    # What a container never needs: apt's downloaded lists and packages, docs (copyright files
    # stay), man pages, translations, logs.
    (
      cd "$work/base"
      rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* var/log/* \
        usr/share/man/* usr/share/info/* usr/share/locale/* var/cache/debconf/*-old
      find usr/share/doc -type f ! -name copyright -delete
      find usr/share/doc -type d -empty -delete
    )
    tar --numeric-owner -C "$work/base" -cf "$base_tar.partial" .
    mv "$base_tar.partial" "$base_tar"
    rm -rf "$work/base"
    say "base: $base_tar ($(du -sh "$base_tar" | cut -f1)) in $(since "$t0")"
  else
    say "base: cached $base_tar"
  fi

  # ---- runtime rootfs: the base plus node ---------------------------------------------------
  t0=$(now)
  mkdir "$work/runtime"
  tar --numeric-owner -C "$work/runtime" -xpf "$base_tar"
  install -m 0755 "$node_bin" "$work/runtime/usr/local/bin/node"
  # node from nodesource or nodejs.org needs only libc and libstdc++ (already in the base);
  # copy whatever else this node links against that the base lacks.
  for lib in $(ldd "$node_bin" | grep -o '/[^ ]*'); do
    if [ ! -e "$work/runtime$lib" ]; then
      mkdir -p "$work/runtime$(dirname "$lib")"
      cp -L "$lib" "$work/runtime$lib"
    fi
  done
  chroot "$work/runtime" /usr/local/bin/node -e 'process.exit(0)' 2>/dev/null ||
    die "node does not start inside the runtime rootfs"
  rm -f "$CACHE"/runtime-*.tar
  tar --numeric-owner -C "$work/runtime" -cf "$runtime_tar.partial" .
  mv "$runtime_tar.partial" "$runtime_tar"
  rm -rf "$work/runtime"
  say "runtime: rootfs with node $node_version, $runtime_tar ($(du -sh "$runtime_tar" | cut -f1)) in $(since "$t0")"
fi

old_ids=()
for t in "${need_runtime[@]}"; do
  t0=$(now)
  old=$(image_id "$t" "$RUNTIME_IMAGE")
  quiet=()
  [ "$(label_of "$t")" = podman ] && quiet=(--quiet)
  run_cli "$t" import "${quiet[@]}" \
    --change "ENV PATH=$PATH_IN_IMAGE" \
    --change "ENV LANG=C.UTF-8" \
    --change "LABEL ion.image.key=$runtime_key" \
    --change 'CMD ["/bin/bash"]' \
    "$runtime_tar" "$RUNTIME_IMAGE" >/dev/null
  [ -n "$old" ] && old_ids+=("$t#$old")
  say "$(label_of "$t"): imported $RUNTIME_IMAGE in $(since "$t0")"
  # A new runtime makes every ion/ion stale, whatever its key said.
  in_list "$t" "${need_ion[@]}" || need_ion+=("$t")
done

# ---- ion/ion: the build context ------------------------------------------------------------
# Kept under the cache between runs: deps/ (the production node_modules) is copied again only
# when the lockfile changes, app/ (Ion's sources, about 1 MB) every time. The Dockerfile
# copies them in that order, so the engines' layer cache reuses the dependency layer and an
# edit to src/ costs one small layer.
if [ ${#need_ion[@]} -gt 0 ]; then
  t0=$(now)
  ctx="$CACHE/ion-context"
  deps_key=$(printf '%s\n' "recipe=$RECIPE" "node=$node_version" "$(sha256sum "$ROOT/package-lock.json")" | sha256sum | cut -c1-16)
  if [ $force = 1 ] || [ "$(cat "$ctx/deps.key" 2>/dev/null)" != "$deps_key" ]; then
    rm -rf "$ctx"
    mkdir -p "$ctx/deps"
    # The production dependencies only (npm ls reads node_modules; no network), without what
    # never runs: source maps, type declarations, docs, better-sqlite3's sources and objects.
    prod=$(cd "$ROOT" && npm ls --omit=dev --all --parseable 2>/dev/null |
      sed -n "s|^$ROOT/node_modules/|node_modules/|p" |
      awk -F/ '{ print ($2 ~ /^@/) ? $1 "/" $2 "/" $3 : $1 "/" $2 }' | LC_ALL=C sort -u || true)
    [ -n "$prod" ] || die "npm ls found no production dependencies: run npm ci first"
    (cd "$ROOT" && tar -c -f - \
      --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' \
      --exclude='*.md' --exclude='*.markdown' \
      --exclude='node_modules/better-sqlite3/deps' --exclude='node_modules/better-sqlite3/src' \
      --exclude='node_modules/better-sqlite3/build/Release/obj*' \
      --exclude='node_modules/better-sqlite3/build/Release/.deps' \
      --exclude='node_modules/better-sqlite3/build/Release/*.a' \
      --exclude='node_modules/better-sqlite3/build/Release/test_extension.node' \
      --exclude='node_modules/better-sqlite3/build/deps' \
      -T <(echo "$prod")) | tar -x -C "$ctx/deps"
    echo "$deps_key" >"$ctx/deps.key"
    say "ion: production node_modules ($(du -sh "$ctx/deps" | cut -f1), $(echo "$prod" | wc -l) packages) in $(since "$t0")"
    t0=$(now)
  fi
  rm -rf "$ctx/app"
  mkdir -p "$ctx/app"
  (cd "$ROOT" && ion_sources | tar -c -T - -f -) | tar -x -C "$ctx/app"
  printf '#!/bin/sh\nexec node /opt/ion/bin/ion.js "$@"\n' >"$ctx/ion"
  chmod 0755 "$ctx/ion"
  say "ion: build context in $(since "$t0")"

  for t in "${need_ion[@]}"; do
    t0=$(now)
    IFS='|' read -r cli _ _ <<<"$t"
    # podman names an imported image localhost/ion/runtime:local; say so, so nothing is pulled.
    from=$RUNTIME_IMAGE
    [ "$cli" = podman ] && from=localhost/$RUNTIME_IMAGE
    cat >"$ctx/Dockerfile" <<EOF
FROM $from
COPY deps/node_modules /opt/ion/node_modules
COPY ion /usr/local/bin/ion
ENV NODE_ENV=production
COPY app /opt/ion
LABEL ion.image.key=$ion_key
EOF
    old=$(image_id "$t" "$ION_IMAGE")
    pull=()
    [ "$cli" = podman ] && pull=(--pull=never)
    if ! run_cli "$t" build --network none "${pull[@]}" -q -t "$ION_IMAGE" -f "$ctx/Dockerfile" "$ctx" >"$work/build.log" 2>&1; then
      cat "$work/build.log" >&2
      die "$(label_of "$t"): building $ION_IMAGE failed (log above)"
    fi
    [ -n "$old" ] && old_ids+=("$t#$old")
    say "$(label_of "$t"): built $ION_IMAGE in $(since "$t0")"
  done
fi

# Drop the images these replaced (ion/ion first: an old ion/ion holds its old runtime). An
# image still used by a container stays.
for ((i = ${#old_ids[@]} - 1; i >= 0; i--)); do
  t=${old_ids[$i]%#*}
  id=${old_ids[$i]##*#}
  [ "$(image_id "$t" "$RUNTIME_IMAGE")" = "$id" ] && continue
  [ "$(image_id "$t" "$ION_IMAGE")" = "$id" ] && continue
  run_cli "$t" rmi "$id" >/dev/null 2>&1 || true
done

build_video_images

for t in "${targets[@]}"; do
  sizes=$(run_cli "$t" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' 2>/dev/null | grep -E '(^|/)ion/(runtime|ion|video-example):local ' | tr '\n' ',' | sed 's/,$//; s/,/, /g')
  say "$(label_of "$t"): $sizes"
done
say "done in $(since "$started_all")"
