"""The harness shared by the kernel comparisons (gemm_compare.py, conv_compare.py,
attention_compare.py): both sides as fresh processes with the same thread count, alternating
which goes first each round, each in its own high-priority autogroup when asked, and the best
(lowest `min_s`) JSON row per (impl, shape) over all rounds.

Each script runs itself with `--reference-child` for the reference side, so the PyTorch
import and its thread pool never share a process with the timing of da3.
"""
import argparse
import json
import os
import subprocess
import sys


def wrap(cmd, nice):
    """`cmd` in a new session whose autogroup has nice `nice` (root), or `cmd` itself."""
    if nice is None:
        return cmd
    return ["setsid", "bash", "-c", f"echo {nice} > /proc/self/autogroup; exec \"$@\"", "_"] + cmd


def parser(doc, binary, iters):
    """The common command line: --bin, --threads, --rounds, --iters, --autogroup-nice."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help=f"the {binary} binary (benches/src/bin/{binary}.rs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--autogroup-nice", type=int, help="run each side in its own autogroup with this nice (root)")
    ap.add_argument("--reference-child", action="store_true", help=argparse.SUPPRESS)
    return ap


def best_rows(args, ours_cmd, ref_cmd):
    """Runs both commands `args.rounds` times, alternating; the best row per (impl, shape)."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    best = {}
    for r in range(args.rounds):
        order = [("da3", ours_cmd), ("reference", ref_cmd)]
        if r % 2:
            order.reverse()
        for name, cmd in order:
            done = subprocess.run(wrap(cmd, args.autogroup_nice), env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr}")
            for line in done.stdout.splitlines():
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                key = (row["impl"], tuple(row["shape"]))
                if key not in best or row["min_s"] < best[key]["min_s"]:
                    best[key] = row
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    return best


def geometric_mean(values):
    product = 1.0
    for v in values:
        product *= v
    return product ** (1 / len(values))
