#!/usr/bin/env python3
"""Reads `perf script` output of one thread (serial_profile.sh) and prints the samples inside
`predict_with`, grouped by the innermost da3 function and the outermost burn-flex op (or the
leaf symbol), as seconds per pass and shares of the thread's serial time."""
import argparse
import collections
import re
import sys

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--rate", type=float, required=True, help="perf sampling rate (Hz)")
ap.add_argument("--passes", type=int, required=True, help="passes in the run (warm-up included)")
ap.add_argument("--top", type=int, default=15)
args = ap.parse_args()

groups = collections.Counter()
for stack in sys.stdin.read().split("\n\n"):
    lines = stack.strip().split("\n")[1:]
    frames = [re.sub(r"^\s*[0-9a-f]+\s+", "", line).split("+0x")[0] for line in lines]
    # predict_with, or (when the compiler inlined it there) da3-bench's pass function, which
    # calls predict_with or predict_batch.
    if not any("predict_with" in f or "predict_batch" in f or f.startswith("da3_bench::predict") for f in frames):
        continue
    da3 = next((f for f in frames if f.startswith("da3::")), "?")
    burn = [f for f in frames if f.startswith("burn_flex::")]
    groups[(da3, burn[-1] if burn else frames[0])] += 1
total = sum(groups.values())
seconds = lambda n: n / args.rate / args.passes
print(f"serial time in predict_with: {seconds(total):.3f} s per pass ({total} samples, {args.passes} passes)")
for (caller, op), n in groups.most_common(args.top):
    print(f"  {seconds(n):6.3f} s  {100 * n / max(total, 1):4.1f} %  {caller[:70]}  <- {op[:70]}")
