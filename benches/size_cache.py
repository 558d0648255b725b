#!/usr/bin/env python3
"""What da3's per-resolution cache saves, with the reference in the same run for scale.

The cache (crates/da3/src/size_cache.rs) keeps what depends only on the input size: the
bicubic interpolation of the positional embedding, the RoPE cos/sin tables, the heads' UV
embeddings. For each case this alternates ROUNDS times between three processes (the order
rotates every round): `da3-bench` with the cache (the default), `da3-bench --no-size-cache`
(every table rebuilt on every pass), and `benches/reference.py` (which rebuilds them on every
pass, as PyTorch code does). Each process loads, runs one warm-up pass and ITERS timed passes
on inputs of one size, so the cached run pays the tables once, in its warm-up. It prints min /
median per pass and the ratios cached / uncached (the cache's gain) and each / reference.

Usage (weights as for compare.py):
  python3 benches/size_cache.py --bin $CARGO_TARGET_DIR/release/da3-bench \\
      --weights-dir ~/.cache/da3-real-goldens --case da3-small:1:378x504 --threads 2 --rounds 3
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare import add_run_args, parse_case, run  # noqa: E402  (same arguments and process runner)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--no-reference", action="store_true", help="time da3 only (both cache settings)")
    args = ap.parse_args()
    ref_device = "cpu" if args.device in ("flex", "ndarray") else "cuda"

    rows = []
    for case in args.case:
        model, batch, views, size, iters = parse_case(case, args.iters)
        weights = os.path.join(args.weights_dir, f"{model}.weights.safetensors")
        common = ["--model", model, "--weights", weights, "--views", str(views), "--size", size,
                  "--iters", str(iters), "--threads", str(args.threads)] + (["--batch", str(batch)] if batch > 1 else [])
        cmds = {
            "cached": [args.bin, *common, "--device", args.device],
            "uncached": [args.bin, *common, "--device", args.device, "--no-size-cache"],
        }
        if not args.no_reference:
            cmds["reference"] = [sys.executable, os.path.join(HERE, "reference.py"), *common, "--device", ref_device]
        times = {name: [] for name in cmds}
        names = list(cmds)
        for r in range(args.rounds):
            t0 = time.time()
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                times[name] += run(cmds[name], args.threads, args.autogroup_nice, args.timeout)["times_s"]
            print(f"{case} round {r + 1}/{args.rounds} ({time.time() - t0:.0f} s): "
                  + ", ".join(f"{n} {min(times[n]):.3f} s" for n in names), file=sys.stderr, flush=True)
        rows.append((case, {n: (min(t), statistics.median(t), len(t)) for n, t in times.items()}))

    ref = not args.no_reference
    print("\n| case | da3 cached ms min / median | da3 uncached ms min / median | cached / uncached median (min) | saved ms per pass (median)"
          + (" | reference ms min / median | cached / reference | uncached / reference" if ref else "") + " |")
    print("|---" * (8 if ref else 5) + "|")
    for case, t in rows:
        c, u = t["cached"], t["uncached"]
        line = (f"| {case} | {1e3 * c[0]:.0f} / {1e3 * c[1]:.0f} | {1e3 * u[0]:.0f} / {1e3 * u[1]:.0f} "
                f"| {c[1] / u[1]:.3f} ({c[0] / u[0]:.3f}) | {1e3 * (u[1] - c[1]):.0f}")
        if ref:
            f = t["reference"]
            line += f" | {1e3 * f[0]:.0f} / {1e3 * f[1]:.0f} | {c[1] / f[1]:.2f} | {u[1] / f[1]:.2f}"
        print(line + " |")
    print(f"\n(da3 --device {args.device}; {args.threads} thread(s); {args.rounds} rounds; passes per setting: "
          + ", ".join(f"{case}: {t['cached'][2]}" for case, t in rows) + ")")


if __name__ == "__main__":
    main()
