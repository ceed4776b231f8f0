#!/usr/bin/env python3
"""Nsight Compute CSV (gpu__time_duration.sum) of one decode step, in launch order: the first
`count` kernels (default 24) with their isolated times, then the total per kernel name
(template arguments kept, namespaces dropped), so variants of one kernel stay apart.
Usage: ncu-sequence.py FILE.csv [count]"""
import csv
import re
import sys
from collections import OrderedDict


def rows(path):
    with open(path) as f:
        return list(csv.DictReader([l for l in f if l.startswith('"')]))


def us(r):
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
    return scale.get(r.get("Metric Unit", ""), 1e-3) * float(r["Metric Value"].replace(",", ""))


def short(name):
    name = name.replace("(anonymous namespace)::", "")
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"\b[a-z_]+::", "", name)  # namespaces
    return name.split("(")[0][:80]


rs = rows(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 24
for r in rs[:count]:
    print(f"  {us(r):8.2f}  {short(r['Kernel Name'])}")
groups = OrderedDict()
for r in rs:
    g = groups.setdefault(short(r["Kernel Name"]), [0, 0.0])
    g[0] += 1
    g[1] += us(r)
for k, (n, t) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    print(f"{k:80s} {n:5d} {t:9.1f} {t / n:7.2f}")
print(f"kernels: {len(rs)}, sum of isolated times {sum(us(r) for r in rs):.1f} us")
