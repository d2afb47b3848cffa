#!/usr/bin/env python3
"""Keeps at most MAX files of CORPUS that together cover the most edges.

usage: greedy.py MAPS CORPUS OUT MAX
MAPS holds one afl-showmap -e map per file of CORPUS (same names). Greedy
set cover: the file adding the most edges not yet covered (the smaller one
on a tie) until MAX files or nothing new; prints the share of edges kept.
"""
import os
import shutil
import sys

maps_dir, corpus, out, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
edges = {}
for name in os.listdir(maps_dir):
    with open(os.path.join(maps_dir, name)) as f:
        edges[name] = {line.split(":")[0] for line in f if line.strip()}
every = set().union(*edges.values()) if edges else set()
covered, kept = set(), []
while len(kept) < limit:
    best = max(
        edges,
        key=lambda n: (len(edges[n] - covered), -os.path.getsize(os.path.join(corpus, n))),
        default=None,
    )
    if best is None or not edges[best] - covered:
        break
    covered |= edges.pop(best)
    kept.append(best)
os.makedirs(out)
for i, name in enumerate(kept):
    shutil.copy(os.path.join(corpus, name), os.path.join(out, f"{i:03}"))
print(f"{len(kept)} files cover {len(covered)} of {len(every)} edges")
