#!/bin/sh
# Ion example module: summarise a counted chunk. A leaf: it raises no event.
#
# Subscribes to: chunk.counted      Publishes: nothing
#
# Appends one line per counts file in in/data/ to out/data/summary.txt:
#   document=notes/ion.txt part=1 words=57 file=counts/notes/ion/part-001.json sha256=<hex>
# and writes the insight summary_bytes. POSIX sh + coreutils + sed only (no jq).
set -eu

cd "${HANDLER_BASE_DIR:-${ION_BASE_DIR:-.}}"

# meta KEY: print the value of the first {"key": KEY, "value": ...} pair of
# in/eventmeta.json, or nothing. Handles compact and pretty-printed JSON and either
# member order. Values are expected to be simple strings (no { or } inside); the
# escapes \" \/ and \\ are decoded.
meta() {
  [ -f in/eventmeta.json ] || return 0
  # One object per line: newlines become spaces, '}' ends a line, '{' is dropped.
  tr '\n\r{}' '   \n' < in/eventmeta.json |
    sed -nE '/"key"[[:space:]]*:[[:space:]]*"'"$1"'"/s/.*"value"[[:space:]]*:[[:space:]]*"(([^"\\]|\\.)*)".*/\1/p' |
    head -n 1 |
    sed -e 's/\\"/"/g' -e 's/\\\//\//g' -e 's/\\\\/\\/g'
}

document=$(meta document)
part=$(meta part)
words=$(meta words)

mkdir -p out/data
summary=out/data/summary.txt
: > "$summary"

find in/data -type f -name '*.json' | LC_ALL=C sort | while IFS= read -r file; do
  hash=$(sha256sum < "$file" | cut -d ' ' -f 1)
  printf 'document=%s part=%s words=%s file=%s sha256=%s\n' \
    "${document:-unknown}" "${part:-?}" "${words:-?}" "${file#in/data/}" "$hash" >> "$summary"
done

if [ ! -s "$summary" ]; then
  echo "summarise: the event carries no counts file (*.json) in in/data/" >&2
  exit 1
fi

bytes=$(wc -c < "$summary" | tr -d ' ')
printf '[{"key": "summary_bytes", "value": "%s"}]\n' "$bytes" > out/insights.json
cat "$summary"
