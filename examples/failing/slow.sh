#!/bin/sh
# Test module: sleeps ${SLEEP_SECONDS:-5} seconds, then exits 0. The sleep runs as a
# child process, so a timeout must kill the whole process group, not just this shell.
set -eu
echo "slow: sleeping ${SLEEP_SECONDS:-5}s"
sleep "${SLEEP_SECONDS:-5}"
echo "slow: done"
