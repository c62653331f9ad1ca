#!/bin/sh
# Test module: writes the bad output selected by $BAD to out/events/ and exits 0, so
# the platform (not the exit code) must reject the attempt.
#   json      out/events/bad.json is not valid JSON
#   type      an event of type undeclared.type
#   missing   files=nope.txt, which does not exist in out/data/
#   dotdot    files=../escape.txt (out/escape.txt exists, but outside out/data/)
#   absolute  files=/etc/passwd
#   symlink   out/data/link -> /etc/passwd, listed in files
# Except for `type`, events use the type ${EVENT_TYPE:-bad.output}: declare it in the
# module's `publishes` so the failure is about the files alone.
set -eu
cd "${HANDLER_BASE_DIR:-${ION_BASE_DIR:-.}}"
mkdir -p out/data out/events
type=${EVENT_TYPE:-bad.output}

event() { # event TYPE FILES
  printf '[{"key": "eventType", "value": "%s"}, {"key": "files", "value": "%s"}]\n' "$1" "$2" \
    > out/events/bad.json
}

case "${BAD:-}" in
  json) printf '[{"key": "eventType", "value": ' > out/events/bad.json ;;
  type) event undeclared.type "" ;;
  missing) event "$type" nope.txt ;;
  dotdot)
    echo escaped > out/escape.txt
    event "$type" ../escape.txt
    ;;
  absolute) event "$type" /etc/passwd ;;
  symlink)
    ln -s /etc/passwd out/data/link
    event "$type" link
    ;;
  *)
    echo "bad-output: set BAD to json, type, missing, dotdot, absolute or symlink (got '${BAD:-}')" >&2
    exit 2
    ;;
esac
echo "bad-output: wrote bad output '$BAD'"
