#!/usr/bin/env python3
"""Nsight Compute source page as CSV (`ncu -i R --page source --csv --print-source sass`): the
SASS instructions with the most warp stall samples, each with its address, its share of all
samples and its top stall reasons, then the samples summed per opcode. Column names vary
between Nsight Compute versions, so they are found by substring.
Usage: ncu-stalls.py FILE.csv [top]"""
import csv
import sys
from collections import Counter


def num(v):
    try:
        return float(str(v).replace(",", ""))
    except ValueError:
        return 0.0


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    # A "Kernel Name" line may precede the table: start at the header that names the source.
    head = next((i for i, l in enumerate(lines) if '"Source"' in l or '"Address"' in l), 0)
    lines = lines[head:]
    rows = list(csv.DictReader(lines))
    if not rows:
        print("no rows in", path)
        return
    cols = [c for c in rows[0].keys() if isinstance(c, str)]
    src = next((c for c in cols if c.lower() == "source"), cols[1] if len(cols) > 1 else cols[0])
    addr = next((c for c in cols if c.lower() == "address"), None)
    total = next((c for c in cols if "Warp Stall Sampling (All" in c), None)
    if total is None:
        print("no warp stall sampling column; columns:", cols[:40])
        return
    print("columns:", ", ".join(cols[:40]))
    # Per-reason columns: stall_* sample counts, when the version prints them.
    reasons = [c for c in cols if c.startswith("stall_") or "Stall Reason" in c]
    all_samples = sum(num(r[total]) for r in rows) or 1.0
    print(f"{len(rows)} SASS lines, {all_samples:.0f} samples ({total})")
    ranked = sorted(rows, key=lambda r: -num(r[total]))
    for r in ranked[:top]:
        why = sorted(((num(r[c]), c) for c in reasons), reverse=True)[:3]
        why_s = ", ".join(f"{c.replace('stall_', '')} {v:.0f}" for v, c in why if v > 0)
        print(f"{100 * num(r[total]) / all_samples:5.1f}%  {r.get(addr, '') if addr else ''}  {r[src][:70]:70s}  {why_s}")
    excess = next((c for c in cols if "Wavefronts Shared Excessive" in c), None)
    if excess:
        worst = sorted(rows, key=lambda r: -num(r[excess]))[:6]
        print("shared-memory excess wavefronts:", "; ".join(
            f"{num(r[excess]):.0f} at {r.get(addr, '') if addr else ''} {r[src][:50]}" for r in worst if num(r[excess]) > 0))
    per_op = Counter()
    for r in rows:
        op = r[src].split()[0] if r[src].split() else "?"
        if op.startswith("@"):
            op = r[src].split()[1] if len(r[src].split()) > 1 else op
        per_op[op.split(".")[0]] += num(r[total])
    print("per opcode:", ", ".join(f"{op} {100 * v / all_samples:.1f}%" for op, v in per_op.most_common(14)))


if __name__ == "__main__":
    main()
