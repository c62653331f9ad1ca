#!/usr/bin/env python3
"""Ion example module: split text documents into chunks, one event per chunk.

Written strictly to the original Ion module contract (ION-CONTRACT.md): it reads
in/eventmeta.json and writes out/insights.json and out/events/*.json as JSON arrays
of {"key": ..., "value": ...} pairs with string values, and `files` is a
comma-separated string of paths relative to out/data/.

Subscribes to: document.uploaded      Publishes: chunk.ready (one per chunk)

Every `.txt` file under in/data/ (subfolders included) is split into paragraphs
(separated by blank lines); each run of PARAGRAPHS_PER_CHUNK paragraphs (default 2)
becomes out/data/chunks/<document without .txt>/part-001.txt, part-002.txt, ...
Python standard library only.
"""

import json
import os
import re
import sys

BLANK_LINES = re.compile(r"\n[ \t]*\n")


def base_dir():
    return os.environ.get("HANDLER_BASE_DIR") or os.environ.get("ION_BASE_DIR") or os.getcwd()


def read_pairs(path):
    """Read a key/value array; a missing file means no pairs."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        pairs = json.load(f)
    return [(str(p["key"]), str(p["value"])) for p in pairs]


def write_pairs(path, pairs):
    with open(path, "w", encoding="utf-8") as f:
        json.dump([{"key": k, "value": v} for k, v in pairs], f, indent=2, ensure_ascii=False)
        f.write("\n")


def find_documents(data_dir):
    """Relative POSIX paths of every .txt file under data_dir, in a stable order."""
    docs = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".txt"):
                rel = os.path.relpath(os.path.join(root, name), data_dir)
                docs.append(rel.replace(os.sep, "/"))
    return docs


def paragraphs(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [p.strip() for p in BLANK_LINES.split(text) if p.strip()]


def chunk_dir_name(doc, taken):
    """chunks/<name>: the document path without .txt, commas replaced (`files` is
    comma-separated), made unique if two documents differ only in the extension's case."""
    name = doc[:-4].replace(",", "_") or "_"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}-{n}", n + 1
    taken.add(unique)
    return unique


def main():
    per_chunk = os.environ.get("PARAGRAPHS_PER_CHUNK", "2")
    if not per_chunk.isdigit() or int(per_chunk) < 1:
        print(f"splitter: PARAGRAPHS_PER_CHUNK must be a positive integer, got {per_chunk!r}",
              file=sys.stderr)
        return 2
    per_chunk = int(per_chunk)

    base = base_dir()
    in_data = os.path.join(base, "in", "data")
    out_data = os.path.join(base, "out", "data")
    out_events = os.path.join(base, "out", "events")
    os.makedirs(out_data, exist_ok=True)
    os.makedirs(out_events, exist_ok=True)

    meta = dict(read_pairs(os.path.join(base, "in", "eventmeta.json")))
    source = meta.get("source", "")

    docs = find_documents(in_data)
    taken = set()
    total_chunks = 0
    for doc in docs:
        with open(os.path.join(in_data, doc), encoding="utf-8", errors="replace") as f:
            paras = paragraphs(f.read())
        groups = [paras[i:i + per_chunk] for i in range(0, len(paras), per_chunk)]
        name = chunk_dir_name(doc, taken)
        for part, group in enumerate(groups, start=1):
            chunk = f"chunks/{name}/part-{part:03d}.txt"
            chunk_path = os.path.join(out_data, *chunk.split("/"))
            os.makedirs(os.path.dirname(chunk_path), exist_ok=True)
            with open(chunk_path, "w", encoding="utf-8") as f:
                f.write("\n\n".join(group) + "\n")

            total_chunks += 1
            event = [
                ("eventType", "chunk.ready"),
                ("files", chunk),
                ("document", doc),
                ("part", str(part)),
                ("parts", str(len(groups))),
            ]
            if source:
                event.append(("source", source))
            # Stable file names: Ion derives child event ids from them, so a retry
            # re-creates the same events.
            write_pairs(os.path.join(out_events, f"chunk-{total_chunks:04d}.json"), event)
        print(f"splitter: {doc}: {len(paras)} paragraphs -> {len(groups)} chunks")

    write_pairs(os.path.join(base, "out", "insights.json"),
                [("documents", str(len(docs))), ("chunks", str(total_chunks))])
    print(f"splitter: {len(docs)} documents, {total_chunks} chunks")
    return 0


if __name__ == "__main__":
    # Warm-capable: run with `warm: true` (ion-warm.yaml), Ion's helper calls main() once per
    # job in a long-lived process; run cold, it calls main() once and exits with its code.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../sdk/python"))
    from ion_warm import serve

    serve(main)
