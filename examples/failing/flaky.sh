#!/bin/sh
# Test module: fails its first attempt (exit 3), succeeds on any later one, raising nothing.
set -eu
attempt=${ION_ATTEMPT:-1}
if [ "$attempt" = 1 ]; then
  echo "flaky: failing on purpose on attempt $attempt" >&2
  exit 3
fi
echo "flaky: succeeded on attempt $attempt"
