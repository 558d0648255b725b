#!/usr/bin/env python3
"""da3's CPU attention kernel against the reference's (PyTorch's
`scaled_dot_product_attention`, the fused flash kernel the reference's blocks call on the CPU)
at the model's attention shapes, in the same run, with the same thread count.

Why: attention is the part of a pass that grows with the square of the token count (global
attention over all views), so at 8 views it is most of the backbone; this table says whether
our kernel (`crates/da3/src/kernels/attention/cpu.rs`) or the reference's is the faster there.
Each round runs the `attention` binary (`--device flex --paths cpu --json`) and SDPA on inputs
of the same shapes and layout (q, k, v as [B, T, H, hd] viewed as [B, H, T, hd], as both
models lay them out), alternating which goes first; the table gives the best time over all
rounds, the ratio da3 / reference and each side's largest error against attention computed
in f64 on 64 sampled query rows.

    cargo build --release -p da3-bench --no-default-features --features flex
    python3 benches/attention_compare.py --bin $CARGO_TARGET_DIR/release/attention --threads 2 --autogroup-nice -20
"""
import json
import os
import sys
import time

import same_run

# [B, H, T, hd]: da3-small (6 heads) and da3-large (16 heads) at 504x378 (973 tokens a view):
# one view, 8 views' local attention, 8 views' global attention.
SHAPES = [
    (1, 6, 973, 64), (8, 6, 973, 64), (1, 6, 7784, 64),
    (1, 16, 973, 64), (1, 16, 7784, 64),
]


def max_err_vs_f64(q, k, v, out):
    """Largest |out - exact| over 64 sampled (batch, head, query) rows, exact in f64."""
    import torch

    b, h, t, hd = q.shape
    worst = 0.0
    for sample in range(64):
        row = (sample * 7919 + 13) % (b * h * t)
        bi, hi, ti = row // (h * t), (row // t) % h, row % t
        qr = q[bi, hi, ti].double()
        scores = (k[bi, hi].double() @ qr) / hd ** 0.5
        weights = torch.softmax(scores, dim=0)
        exact = weights @ v[bi, hi].double()
        worst = max(worst, (out[bi, hi, ti].double() - exact).abs().max().item())
    return worst


def run_reference(shapes, threads, iters):
    """Times SDPA per shape in this process; one dict per shape."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = []
    for b, h, t, hd in shapes:
        def inputs():
            return [torch.randn(b, t, h, hd).transpose(1, 2) for _ in range(3)]

        q, k, v = inputs()
        err = max_err_vs_f64(q, k, v, F.scaled_dot_product_attention(q, k, v))  # also the warm-up
        times = []
        for _ in range(iters):
            q, k, v = inputs()  # fresh inputs per call, as the da3 side
            start = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v)
            times.append(time.perf_counter() - start)
        times.sort()
        out.append({"impl": "reference", "shape": [b, h, t, hd], "threads": torch.get_num_threads(),
                    "min_s": times[0], "median_s": times[len(times) // 2], "max_err_vs_f64": err})
    return out


def main():
    ap = same_run.parser(__doc__, "attention", 5)
    ap.add_argument("--shapes", nargs="+", help="B,H,T,hd shapes (default: the model's)")
    ap.add_argument("--products", choices=["gemm", "avx2", "avx512"],
                    help="da3's CPU attention products (DA3_CPU_ATTENTION_PRODUCTS) instead of the "
                         "one the CPU gets by default (avx512 on AVX-512 CPUs, avx2 on AVX2 CPUs without it, else gemm)")
    args = ap.parse_args()
    if args.products:
        os.environ["DA3_CPU_ATTENTION_PRODUCTS"] = args.products  # inherited by the da3 process
    shapes = [tuple(int(x) for x in s.split(",")) for s in args.shapes] if args.shapes else SHAPES

    if args.reference_child:
        for row in run_reference(shapes, args.threads, args.iters):
            print(json.dumps(row))
        return
    if not args.bin:
        ap.error("--bin is required")

    shape_args = [",".join(map(str, s)) for s in shapes]
    ours_cmd = [args.bin, "--device", "flex", "--paths", "cpu", "--json", "--iters", str(args.iters),
                "--shapes", *shape_args]
    ref_cmd = [sys.executable, os.path.abspath(__file__), "--reference-child", "--threads", str(args.threads),
               "--iters", str(args.iters), "--shapes", *shape_args]
    best = same_run.best_rows(args, ours_cmd, ref_cmd)

    print("| B, H, T, hd | da3 ms (min) | reference ms (min) | da3 GFLOP/s | reference GFLOP/s | "
          "time ratio da3 / reference | da3 max err vs f64 | reference max err vs f64 |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for s in shapes:
        ours, ref = best[("da3", s)], best[("reference", s)]
        b, h, t, hd = s
        flop = 4 * b * h * t * t * hd  # q kᵀ and p v
        ratios.append(ours["min_s"] / ref["min_s"])
        print(f"| {b}, {h}, {t}, {hd} | {ours['min_s'] * 1e3:.2f} | {ref['min_s'] * 1e3:.2f} | "
              f"{flop / ours['min_s'] / 1e9:.0f} | {flop / ref['min_s'] / 1e9:.0f} | {ratios[-1]:.2f} | "
              f"{ours['max_err_vs_f64']:.1e} | {ref['max_err_vs_f64']:.1e} |")
    geo = same_run.geometric_mean(ratios)
    threads = {best[("da3", shapes[0])]["threads"], best[("reference", shapes[0])]["threads"]}
    print(f"\n(da3 products: {args.products or 'default'}; geometric mean of the ratios {geo:.2f}; best of {args.rounds} rounds x {args.iters} calls; "
          f"threads reported: {sorted(threads)})")


if __name__ == "__main__":
    main()
