#!/usr/bin/env python3
"""Summarises Nsight Compute CSV (metric gpu__time_duration.sum) of one decode step:
kernels grouped by name in launch order, their isolated time, and (with a second, graph-mode
CSV) the whole graph's time, so the cost of the kernel boundaries shows."""
import csv
import sys
from collections import OrderedDict


def rows(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    return list(csv.DictReader(lines))


def us(r):
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "")
    return {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}.get(unit, 1e-3) * v


def short(name):
    name = name.split("(")[0]
    return name[:70]


node = rows(sys.argv[1])
groups = OrderedDict()
total = 0.0
for r in node:
    t = us(r)
    total += t
    g = groups.setdefault(short(r["Kernel Name"]), [0, 0.0])
    g[0] += 1
    g[1] += t
print(f"{'kernel':70s} {'n':>5s} {'sum us':>9s} {'mean':>7s}")
for k, (n, t) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    print(f"{k:70s} {n:5d} {t:9.1f} {t / n:7.2f}")
print(f"kernels: {len(node)}, sum of isolated times {total:.1f} us")
if len(sys.argv) > 2:
    g = rows(sys.argv[2])
    gt = sum(us(r) for r in g)
    print(f"graph mode: {len(g)} results, {gt:.1f} us; boundaries cost {gt - total:.1f} us "
          f"({(gt - total) / max(len(node), 1):.2f} us per kernel)")
