#!/usr/bin/env python3
"""da3's CPU 3x3 convolutions against the reference's (PyTorch's conv2d, oneDNN on x86) at the
DPT head's shapes, in the same run, with the same thread count.

Why: the head's 3x3 convolutions are about a third of a da3-small pass's arithmetic. da3 runs
them with Winograd F(4x4, 3x3) (4x fewer multiply-adds than a direct convolution); this
measures that choice against the shifted-GEMM path it replaced and against the reference's
convolution. Each round runs the `conv` binary (both da3 algorithms) and torch's conv2d on the
same shapes, alternating which goes first; the table gives the best time over all rounds and
the ratios to the reference.

    cargo build --release -p da3-bench --no-default-features --features flex
    python3 benches/conv_compare.py --bin $CARGO_TARGET_DIR/release/conv --threads 2 --autogroup-nice -20
"""
import json
import os
import sys
import time

import same_run

# (C_in, C_out, H, W) of the 3x3 convolutions of da3-small's DualDPT head at one 504x378 view
# (patch grid 27x36; F = 64 features), and how many times one pass runs each (per view):
SHAPES_PER_PASS = [
    ((384, 64, 14, 18), 1), ((192, 64, 27, 36), 1), ((96, 64, 54, 72), 1), ((48, 64, 108, 144), 1),  # stage adapters
    ((64, 64, 14, 18), 4),  # fusion level 4 (one residual unit) in both chains
    ((64, 64, 27, 36), 8), ((64, 64, 54, 72), 8), ((64, 64, 108, 144), 8),  # levels 3..1: two units, both chains
    ((64, 32, 216, 288), 4),  # output_conv1, aux convs 1, 3, 5
    ((32, 64, 216, 288), 2),  # aux convs 2, 4
    ((32, 32, 216, 288), 1),  # aux hidden
    ((32, 32, 378, 504), 1),  # output hidden, at image size
]
SHAPES = [s for s, _ in SHAPES_PER_PASS]
PER_PASS = [n for _, n in SHAPES_PER_PASS]


def run_reference(shapes, threads, iters):
    """Times torch's conv2d per shape in this process; one dict per shape."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    out = []
    with torch.inference_mode():
        for ci, co, h, w in shapes:
            fill = lambda length, seed: (torch.arange(length, dtype=torch.float64) * 7919 + seed) % 2003 / 1001.5 - 1.0
            x = fill(ci * h * w, 1).float().reshape(1, ci, h, w)
            wt = fill(co * ci * 9, 2).float().reshape(co, ci, 3, 3)
            bias = fill(co, 3).float()
            F.conv2d(x, wt, bias, padding=1)  # warm-up
            times = []
            for _ in range(iters):
                start = time.perf_counter()
                y = F.conv2d(x, wt, bias, padding=1)
                times.append(time.perf_counter() - start)
            times.sort()
            out.append({"impl": "reference", "shape": [ci, co, h, w], "threads": torch.get_num_threads(),
                        "min_s": times[0], "median_s": times[len(times) // 2], "checksum": float(y.double().sum())})
    return out


def main():
    ap = same_run.parser(__doc__, "conv", 10)
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

    # The same operands on both sides: the outputs must agree (checksums within rounding).
    for s in SHAPES:
        ref = best[("reference", s)]["checksum"]
        for impl in ("da3_winograd", "da3_shifted_gemm"):
            ours = best[(impl, s)]["checksum"]
            if abs(ours - ref) > 1e-3 * max(1.0, abs(ref)):
                sys.exit(f"{impl} {s}: checksum {ours} differs from the reference's {ref}")

    print("| C_in, C_out, H, W | per pass | da3 Winograd ms | da3 shifted GEMM ms | reference ms | "
          "Winograd / reference | shifted GEMM / reference |")
    print("|---|---|---|---|---|---|---|")
    totals = {"da3_winograd": 0.0, "da3_shifted_gemm": 0.0, "reference": 0.0}
    for s, count in zip(SHAPES, PER_PASS):
        wino, shifted, ref = (best[(i, s)]["min_s"] for i in ("da3_winograd", "da3_shifted_gemm", "reference"))
        for impl, t in (("da3_winograd", wino), ("da3_shifted_gemm", shifted), ("reference", ref)):
            totals[impl] += count * t
        print(f"| {', '.join(map(str, s))} | {count} | {wino * 1e3:.2f} | {shifted * 1e3:.2f} | {ref * 1e3:.2f} | "
              f"{wino / ref:.2f} | {shifted / ref:.2f} |")
    t = totals
    print(f"| **one pass (weighted)** | | {t['da3_winograd'] * 1e3:.0f} | {t['da3_shifted_gemm'] * 1e3:.0f} | "
          f"{t['reference'] * 1e3:.0f} | {t['da3_winograd'] / t['reference']:.2f} | "
          f"{t['da3_shifted_gemm'] / t['reference']:.2f} |")
    threads = {best[("da3_winograd", SHAPES[0])]["threads"], best[("reference", SHAPES[0])]["threads"]}
    print(f"\n(best of {args.rounds} rounds x {args.iters} calls; threads reported: {sorted(threads)}; "
          f"'per pass' = how often da3-small's head runs the shape per view)")


if __name__ == "__main__":
    main()
