#!/usr/bin/env python3
"""da3's CPU matrix product against the reference's (PyTorch's BLAS, MKL on x86) at the
model's linear-layer shapes, in the same run, with the same thread count.

Why: matrix products are most of a CPU pass of both implementations (README "Performance"),
so their relative speed bounds how far da3 can get below the reference's time on the same
arithmetic. Each round runs the `gemm` binary (da3::kernels::cpu_matmul_bias, what every linear
layer runs on flex) and `torch.addmm` on the same shapes, alternating which goes first; the
table gives the best time over all rounds and the ratio da3 / reference.

    cargo build --release -p da3-bench --no-default-features --features flex
    python3 benches/gemm_compare.py --bin $CARGO_TARGET_DIR/release/gemm --threads 2 --autogroup-nice -20
"""
import json
import os
import sys
import time

import same_run

# [M, K, N] of the backbone's linear layers at one 504x378 view (974 tokens): qkv, proj,
# fc1, fc2 of da3-small (D=384) and da3-base (D=768).
SHAPES = [
    (974, 384, 1152), (974, 384, 384), (974, 384, 1536), (974, 1536, 384),
    (974, 768, 2304), (974, 768, 768), (974, 768, 3072), (974, 3072, 768),
]


def run_reference(shapes, threads, iters):
    """Times torch.addmm per shape in this process; one dict per shape."""
    import torch

    torch.set_num_threads(threads)
    out = []
    for m, k, n in shapes:
        fill = lambda length, seed: (torch.arange(length, dtype=torch.float64) * 7919 + seed) % 2003 / 1001.5 - 1.0
        a = fill(m * k, 1).float().reshape(m, k)
        w = fill(k * n, 2).float().reshape(k, n)
        bias = fill(n, 3).float()
        torch.addmm(bias, a, w)  # warm-up
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            torch.addmm(bias, a, w)
            times.append(time.perf_counter() - start)
        times.sort()
        out.append({"impl": "reference", "shape": [m, k, n], "threads": torch.get_num_threads(),
                    "min_s": times[0], "median_s": times[len(times) // 2]})
    return out


def main():
    ap = same_run.parser(__doc__, "gemm", 20)
    args = ap.parse_args()

    if args.reference_child:
        for row in run_reference(SHAPES, args.threads, args.iters):
            print(json.dumps(row))
        return
    if not args.bin:
        ap.error("--bin is required")

    shape_args = [",".join(map(str, s)) for s in SHAPES]
    ours_cmd = [args.bin, "--iters", str(args.iters), "--shapes", *shape_args]
    ref_cmd = [sys.executable, os.path.abspath(__file__), "--reference-child", "--threads", str(args.threads),
               "--iters", str(args.iters)]
    best = same_run.best_rows(args, ours_cmd, ref_cmd)

    print("| M, K, N | da3 ms (min) | reference ms (min) | da3 GFLOP/s | reference GFLOP/s | time ratio da3 / reference |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for s in SHAPES:
        ours, ref = best[("da3", s)], best[("reference", s)]
        flop = 2 * s[0] * s[1] * s[2]
        ratios.append(ours["min_s"] / ref["min_s"])
        print(f"| {s[0]}, {s[1]}, {s[2]} | {ours['min_s'] * 1e3:.2f} | {ref['min_s'] * 1e3:.2f} | "
              f"{flop / ours['min_s'] / 1e9:.0f} | {flop / ref['min_s'] / 1e9:.0f} | {ratios[-1]:.2f} |")
    geo = same_run.geometric_mean(ratios)
    threads = {best[("da3", SHAPES[0])]["threads"], best[("reference", SHAPES[0])]["threads"]}
    print(f"\n(geometric mean of the ratios {geo:.2f}; best of {args.rounds} rounds x {args.iters} calls; "
          f"threads reported: {sorted(threads)})")


if __name__ == "__main__":
    main()
