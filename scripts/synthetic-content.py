#!/usr/bin/env python3
"""Writes a content file (what `liveseg content list --vectors -o jsonl`
prints) for every content id and page path a history names, with seeded
random unit vectors of 384 dimensions: for measuring what the
content-affinity features cost in `liveseg model train` on a generated
workload, whose content has no texts to embed. The vectors carry no
meaning, so the figures are of cost, not of accuracy.

Usage: scripts/synthetic-content.py HISTORY.jsonl > content.jsonl
"""
import json
import random
import sys

DIMS = 384


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    contents, paths = set(), set()
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            props = e.get("properties") or {}
            if isinstance(props.get("content_id"), str):
                contents.add(props["content_id"])
            if e.get("type") == "page" and isinstance(props.get("path"), str):
                paths.add(props["path"])
    rng = random.Random(5)
    items = [(c, "") for c in sorted(contents)]
    items += [(f"page:{p}", p) for p in sorted(paths)]
    out = sys.stdout
    for ident, url in items:
        v = [rng.gauss(0.0, 1.0) for _ in range(DIMS)]
        norm = sum(x * x for x in v) ** 0.5
        line = {"id": ident, "url": url, "model": "synthetic",
                "vector": [round(x / norm, 6) for x in v]}
        out.write(json.dumps(line) + "\n")
    print(f"{len(contents)} content ids, {len(paths)} page paths",
          file=sys.stderr)


if __name__ == "__main__":
    main()
