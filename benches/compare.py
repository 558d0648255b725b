#!/usr/bin/env python3
"""da3 vs the reference PyTorch network, in the same run, on identical inputs and weights.

For each case (model, views, size) it alternates ROUNDS times between one `da3-bench` process
and one `benches/reference.py` process (each: load, one warm-up pass, ITERS timed passes),
with the same thread count (RAYON_NUM_THREADS / OMP_NUM_THREADS / torch.set_num_threads),
and reports the min and median latency per view over all timed passes, throughput, peak RSS
and load time, with the ratio da3 / reference (< 1 means da3 is faster or smaller).

Weights: random-weight checkpoints in the Hub layout made by tools/golden/generate.py
(`--preset NAME --views 1 --size 28x28 --out DIR`), which cost the same compute as the real
ones. Nothing here downloads anything.

Usage:
  python3 benches/compare.py --bin target/release/da3-bench --weights-dir ~/.cache/da3-real-goldens \\
      --case da3-small:1:378x504 --case da3-small:2:378x504 --threads 1 --rounds 3 --iters 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(runs, views):
    times = [t for r in runs for t in r["times_s"]]
    per_view = [t / views for t in times]
    return {
        "min_per_view": min(per_view),
        "median_per_view": statistics.median(per_view),
        "views_per_s": views / statistics.median(times),
        "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024,
        "load_s": min(r["load_s"] for r in runs),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the da3-bench binary")
    ap.add_argument("--weights-dir", required=True, help="holds <preset>.weights.safetensors")
    ap.add_argument("--case", action="append", required=True, help="MODEL:VIEWS:HxW")
    ap.add_argument("--device", default="flex", help="da3-bench --device (the reference runs on CPU here)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()

    rows = []
    for case in args.case:
        model, views, size = case.split(":")
        views = int(views)
        weights = os.path.join(args.weights_dir, f"{model}.weights.safetensors")
        common = ["--model", model, "--weights", weights, "--views", str(views), "--size", size, "--iters", str(args.iters)]
        ours, ref = [], []
        for r in range(args.rounds):
            ours.append(run([args.bin, *common, "--device", args.device], args.threads))
            ref.append(run([sys.executable, os.path.join(HERE, "reference.py"), *common, "--threads", str(args.threads)], args.threads))
            print(f"{case} round {r + 1}/{args.rounds}: da3 {min(ours[-1]['times_s']):.3f} s, "
                  f"reference {min(ref[-1]['times_s']):.3f} s", file=sys.stderr)
        a, b = summarize(ours, views), summarize(ref, views)
        rows.append((model, views, size, a, b))

    print(f"| model | views | size | da3 ms/view (min / median) | reference ms/view (min / median) | ratio (median) "
          f"| da3 peak RSS MB | reference peak RSS MB | ratio | da3 load s | reference load s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, views, size, a, b in rows:
        print(f"| {model} | {views} | {size} | {1e3 * a['min_per_view']:.0f} / {1e3 * a['median_per_view']:.0f} "
              f"| {1e3 * b['min_per_view']:.0f} / {1e3 * b['median_per_view']:.0f} "
              f"| {a['median_per_view'] / b['median_per_view']:.2f} "
              f"| {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {a['peak_rss_mb'] / b['peak_rss_mb']:.2f} "
              f"| {a['load_s']:.2f} | {b['load_s']:.2f} |")
    print(f"\n(device {args.device}, {args.threads} thread(s), {args.rounds} rounds x {args.iters} timed passes each)")


if __name__ == "__main__":
    main()
