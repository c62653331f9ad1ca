#!/usr/bin/env bash
# Starts and stops the container engines the tests and CI use, each on a unix socket under
# $ION_ENGINE_DIR (default /run/ion-test):
#
#   podman  `podman system service --time=0 unix://$DIR/podman.sock`, with CONTAINERS_CONF
#           set to $DIR/containers.conf (runtime runc and ulimits the machine accepts: see
#           "Engines on a host" in docs/executors.md) and the machine's default image
#           storage, so images built by `podman` (npm run images) are visible to it.
#   docker  `dockerd -H unix://$DIR/docker.sock` with its own data root
#           ($ION_DOCKER_DATA_ROOT, default /var/lib/ion-test/docker), so it never shares
#           state with a system dockerd.
#
# Usage:
#   scripts/engines.sh start podman|docker   reuse the socket if it answers, else start the
#                                            daemon and wait for it (deadline, no fixed sleep);
#                                            prints "reused" or "started <pid>"
#   scripts/engines.sh stop podman|docker [--owner ID]
#                                            stop the daemon if this script started it (and,
#                                            with --owner, only if ID started it)
#   scripts/engines.sh env podman|docker     print the environment its CLI needs (KEY=value)
#
# Ownership: `start` records $ION_ENGINE_OWNER (default "manual") beside the pid, so .ci/run
# and a vitest run each stop only the daemons they started. Concurrent calls are serialised by
# a lock per engine (flock), so two test files asking at once start one daemon.
set -euo pipefail

DIR=${ION_ENGINE_DIR:-/run/ion-test}
DOCKER_DATA_ROOT=${ION_DOCKER_DATA_ROOT:-/var/lib/ion-test/docker}
START_DEADLINE_S=${ION_ENGINE_START_DEADLINE_S:-60}
STOP_DEADLINE_S=20

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "engines: $*" >&2; exit 1; }

action=${1:-}
kind=${2:-}
[ -n "$action" ] && [ -n "$kind" ] || usage
case "$kind" in podman | docker) ;; *) usage ;; esac
shift 2
want_owner=
while [ $# -gt 0 ]; do
  case "$1" in
    --owner) want_owner=${2:?--owner needs an id}; shift 2 ;;
    *) usage ;;
  esac
done

sock="$DIR/$kind.sock"
pidfile="$DIR/$kind.pid"
ownerfile="$DIR/$kind.owner"
log="$DIR/$kind.log"
conf="$DIR/containers.conf"

env_lines() {
  if [ "$kind" = podman ]; then echo "CONTAINERS_CONF=$conf"; fi
  echo "DOCKER_HOST=unix://$sock"
}

# GET /_ping on the socket, with node (always here: Ion needs it) rather than curl.
ping() {
  [ -S "$sock" ] || return 1
  node -e '
    const req = require("http").get({ socketPath: process.argv[1], path: "/_ping", timeout: 3000 }, (res) => {
      process.exit(res.statusCode === 200 ? 0 : 1);
    });
    req.on("timeout", () => process.exit(1));
    req.on("error", () => process.exit(1));' "$sock" 2>/dev/null
}

# The pid in the pidfile, if that process is alive and is this engine's daemon.
daemon_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$sock" || return 1
  echo "$pid"
}

write_podman_conf() {
  # podman asks for nofile=1048576 by default, above this machine's hard limit, and root here
  # lacks CAP_SYS_RESOURCE; crun refuses cgroup v1 hybrid mode. So: runc, and limits that fit.
  local nofile
  nofile=$(ulimit -Hn)
  if [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ]; then nofile=1048576; fi
  cat >"$conf.new" <<EOF
# Written by scripts/engines.sh for Ion's tests.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
  mv "$conf.new" "$conf"
}

start() {
  if ping; then echo reused; return 0; fi
  local pid
  if ! pid=$(daemon_pid); then
    rm -f "$sock" "$pidfile" "$ownerfile"
    case "$kind" in
      podman)
        command -v podman >/dev/null || die "podman is not installed (apt-get install podman runc catatonit)"
        command -v runc >/dev/null || die "runc is not installed (apt-get install runc)"
        write_podman_conf
        # Run from $DIR: conmon writes files such as `oom` into its working directory, which
        # would otherwise be whatever folder the tests were started from (the repository).
        (cd "$DIR" && CONTAINERS_CONF=$conf exec setsid podman system service --time=0 "unix://$sock") </dev/null >>"$log" 2>&1 9>&- &
        pid=$!
        ;;
      docker)
        command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install docker.io)"
        mkdir -p "$DOCKER_DATA_ROOT" "$DIR/docker-exec"
        (cd "$DIR" && exec setsid dockerd --data-root "$DOCKER_DATA_ROOT" --exec-root "$DIR/docker-exec" \
          --pidfile "$DIR/dockerd.pid" -H "unix://$sock") </dev/null >>"$log" 2>&1 9>&- &
        pid=$!
        ;;
    esac
    echo "$pid" >"$pidfile"
    echo "${ION_ENGINE_OWNER:-manual}" >"$ownerfile"
  fi
  # Wait for the socket to answer, failing at once if the daemon dies.
  local deadline=$((SECONDS + START_DEADLINE_S))
  until ping; do
    if [ ! -d "/proc/$pid" ]; then
      tail -n 20 "$log" >&2
      rm -f "$pidfile" "$ownerfile"
      die "$kind exited while starting (log $log, tail above)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$log" >&2
      die "$kind did not answer on $sock within ${START_DEADLINE_S}s (pid $pid, log $log)"
    fi
    sleep 0.1
  done
  echo "started $pid"
}

stop() {
  local owner pid
  owner=$(cat "$ownerfile" 2>/dev/null) || { echo "not started here; left alone"; return 0; }
  if [ -n "$want_owner" ] && [ "$owner" != "$want_owner" ]; then
    echo "started by $owner; left running"
    return 0
  fi
  if pid=$(daemon_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_DEADLINE_S))
    while [ -d "/proc/$pid" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    echo "stopped $pid"
  else
    echo "was not running"
  fi
  rm -f "$pidfile" "$ownerfile" "$sock"
}

mkdir -p "$DIR"
case "$action" in
  env) env_lines ;;
  start | stop)
    exec 9>"$DIR/$kind.lock"
    flock 9
    "$action"
    ;;
  *) usage ;;
esac
