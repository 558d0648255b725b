#!/usr/bin/env python3
"""da3 vs the reference PyTorch network, in the same run, on identical inputs and weights.

For each case (model, views, size; views may be BxS, B independent scenes of S views in one
forward pass: da3's `predict_batch`, the reference's `net(x)` on [B, S, 3, H, W]) it alternates ROUNDS times between one `da3-bench` process
and one `benches/reference.py` process (each: load, one warm-up pass, ITERS timed passes;
which of the two goes first alternates between rounds), with the same thread count
(RAYON_NUM_THREADS / MATMUL_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, `--threads` of
both), and reports over all timed passes: the min and median latency per view, throughput
(views/s at the median), peak resident memory (VmHWM of the whole process), device memory on
a GPU (peak `nvidia-smi` usage of each process, sampled every 50 ms), model load time, and the
ratio da3 / reference (< 1: da3 is faster or smaller; for views/s > 1 is better). It also
prints the paired time ratio: each round's da3 median pass over the same round's reference
median pass, the median and range of those over the rounds, and a distribution-free interval
for that median (order statistics, ~90 % or more; `median_interval`). The two processes of a round
run back to back, so its range shows how far a shared host's slow phases (other VMs on the
same cores) moved the ratio between rounds; the table keeps the pooled ratio.

`--profile` also times the stages of both (da3: backbone, network, prediction; reference:
backbone, head, cam_dec per forward hook) and prints each one's share of the pass.

The same script runs on a GPU machine with only the device changed: `--device cuda` (or wgpu)
makes the reference run on CUDA too (`--ref-device`, `--ref-dtype fp32|bf16|fp16`).

Weights: random-weight checkpoints in the Hub layout made by tools/golden/generate.py
(`--preset NAME --views 1 --size 28x28 --out DIR`), which cost the same compute as the real
ones. Nothing here downloads anything.

On a shared Linux machine with autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled
= 1) `nice` does not work across sessions: `--autogroup-nice -20` runs every measured process
in its own session whose autogroup gets that nice, so other sessions' builds do not take half
of the CPU from the measurement (needs root for negative values).

Usage:
  python3 benches/compare.py --bin target/release/da3-bench --weights-dir ~/.cache/da3-real-goldens \\
      --case da3-small:1:378x504 --case da3-small:2:378x504 --threads 2 --rounds 3 --iters 3
"""

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class GpuMemorySampler:
    """Peak `nvidia-smi` memory (MiB) of one process, polled in a thread; None without a GPU."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, None, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        if shutil.which("nvidia-smi"):
            self.thread.start()

    def _poll(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                for line in out.splitlines():
                    pid, mem = (v.strip() for v in line.split(","))
                    if int(pid) == self.pid:
                        self.peak = max(self.peak or 0, float(mem))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self.stop.wait(0.05)

    def finish(self):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        return self.peak


def run(cmd, threads, autogroup_nice, timeout):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), MATMUL_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))

    def own_autogroup():
        os.setsid()
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(autogroup_nice))

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=own_autogroup if autogroup_nice is not None else None)
    sampler = GpuMemorySampler(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        sampler.finish()
        sys.exit(f"timed out after {timeout} s: {shlex.join(cmd)}")
    gpu_peak = sampler.finish()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["gpu_peak_mb"] = gpu_peak
    return result


def parse_case(case, default_iters):
    """MODEL:VIEWS:HxW[:ITERS] -> (model, batch, views per scene, size, iters); VIEWS is S, or
    BxS for B independent scenes of S views each in one forward pass."""
    model, views, size, *iters = case.split(":")
    batch, _, scene_views = views.rpartition("x")
    return model, int(batch or 1), int(scene_views), size, int(iters[0]) if iters else default_iters


def summarize(runs, views):
    times = [t for r in runs for t in r["times_s"]]
    cpu = [t for r in runs for t in r.get("cpu_s", [])]
    per_view = [t / views for t in times]
    gpu = [r["gpu_peak_mb"] for r in runs if r.get("gpu_peak_mb") is not None]
    return {
        "passes": len(times),
        "min_per_view": min(per_view),
        "median_per_view": statistics.median(per_view),
        "views_per_s": views / statistics.median(times),
        "cpu_per_wall": statistics.median(c / t for c, t in zip(cpu, times)) if cpu else None,
        "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024,
        "rss_start_mb": min(r.get("rss_start_kb", 0) for r in runs) / 1024,
        "rss_loaded_mb": max(r.get("rss_loaded_kb", 0) for r in runs) / 1024,
        "gpu_peak_mb": max(gpu) if gpu else None,
        "load_s": min(r["load_s"] for r in runs),
        "load_median_s": statistics.median(r["load_s"] for r in runs),
        "threads": runs[0].get("threads"),
    }


def median_interval(values, at_least=0.9):
    """A distribution-free confidence interval for the median of what the values sample: the
    order statistics (x_(k), x_(n+1-k)) with the largest k whose coverage, 1 - 2 P(Bin(n, 1/2) < k),
    is still >= at_least. Returns (low, high, coverage); (min, max, coverage) when n is too small
    for more. Rounds are the independent samples of a paired ratio (host phases move both sides)."""
    xs, n = sorted(values), len(values)
    tail = lambda k: sum(math.comb(n, i) for i in range(k)) / 2 ** n  # P(Bin(n, 1/2) < k)
    k = 1
    while k + 1 <= n // 2 and 1 - 2 * tail(k + 1) >= at_least:
        k += 1
    return xs[k - 1], xs[n - k], 1 - 2 * tail(k)


def paired_ratios(ours, ref):
    """Per round: da3's median pass time over the reference's median pass time (same views)."""
    return [statistics.median(a["times_s"]) / statistics.median(b["times_s"]) for a, b in zip(ours, ref)]


def stage_shares(runs):
    """Median seconds per pass of each profiled stage, and of the derived ones (da3: heads =
    network - backbone, other = predict - network; reference: other = network - backbone -
    head - cam_dec), each derived per pass before the median."""
    stages = {}
    for r in runs:
        p = r.get("profile") or {}
        for name, values in p.items():
            stages.setdefault(name, []).extend(values)
        if "predict_s" in p:  # da3
            stages.setdefault("heads_s", []).extend(n - b for n, b in zip(p["network_s"], p["backbone_s"]))
            stages.setdefault("other_s", []).extend(t - n for t, n in zip(p["predict_s"], p["network_s"]))
        elif "network_s" in p:  # reference
            heads = [h + c for h, c in zip(p["head_s"], p.get("cam_dec_s", [0.0] * len(p["head_s"])))]
            stages.setdefault("heads_s", []).extend(heads)
            stages.setdefault("other_s", []).extend(n - b - h for n, b, h in zip(p["network_s"], p["backbone_s"], heads))
    return {name: statistics.median(v) for name, v in stages.items()}


def print_profile(case, ours, ref):
    o, r = stage_shares(ours), stage_shares(ref)
    if not o or not r:
        return
    line = lambda s, total, heads: (f"backbone {s['backbone_s']:.3f} ({s['backbone_s'] / total:.0%}), "
                                    f"{heads} {s['heads_s']:.3f} ({s['heads_s'] / total:.0%}), "
                                    f"other {s['other_s']:.3f} ({s['other_s'] / total:.0%}), total {total:.3f}")
    print(f"\nprofile {case} (median s per pass; share of the pass):")
    print(f"  da3:       {line(o, o['predict_s'], 'DualDPT + CameraDec')} (other: upload, readback, host conversion)")
    print(f"  reference: {line(r, r['network_s'], 'head + cam_dec')} (other: the rest of net.forward)")
    print(f"  ratio da3/reference: backbone {o['backbone_s'] / r['backbone_s']:.2f}, heads {o['heads_s'] / r['heads_s']:.2f}")


def add_run_args(ap):
    """The arguments every benchmark driver here shares (compare.py, size_cache.py)."""
    ap.add_argument("--bin", required=True, help="the da3-bench binary")
    ap.add_argument("--weights-dir", required=True, help="holds <preset>.weights.safetensors")
    ap.add_argument("--case", action="append", required=True,
                    help="MODEL:VIEWS:HxW[:ITERS]; VIEWS may be BxS: B independent scenes of S views in one pass")
    ap.add_argument("--device", default="flex", help="da3-bench --device: flex, ndarray, wgpu, cuda")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3, help="timed passes per process (a case's :ITERS overrides)")
    ap.add_argument("--autogroup-nice", type=int, help="run each measured process in its own autogroup with this nice")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per process")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--ref-device", help="reference.py --device (default: cpu for flex/ndarray, else cuda)")
    ap.add_argument("--ref-dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="reference autocast dtype (GPU)")
    ap.add_argument("--profile", action="store_true", help="also time the stages of both")
    ap.add_argument("--json", help="write every run's raw result here")
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "fp16", "bf16"], help="da3-bench --precision")
    ap.add_argument("--unfused", action="store_true", help="da3-bench --unfused (cuda/wgpu without Burn's op fusion)")
    ap.add_argument("--ray-pose", action="store_true",
                    help="both sides with use_ray_pose (poses from the ray map; da3 then runs DualDPT's aux branch too)")
    ap.add_argument("--peak-tflops", type=float,
                    help="the device's peak TFLOP/s at the compared precision: also prints each side's achieved "
                         "TFLOP/s (FLOPs of one pass counted by torch.utils.flop_counter) and its fraction of the peak")
    args = ap.parse_args()
    ref_device = args.ref_device or ("cpu" if args.device in ("flex", "ndarray") else "cuda")

    rows, raw = [], []
    for case in args.case:
        model, batch, scene_views, size, iters = parse_case(case, args.iters)
        views = batch * scene_views  # per pass: what "per view" and "views/s" count
        weights = os.path.join(args.weights_dir, f"{model}.weights.safetensors")
        common = ["--model", model, "--weights", weights, "--views", str(scene_views), "--size", size,
                  "--iters", str(iters), "--threads", str(args.threads)] + (["--batch", str(batch)] if batch > 1 else []) \
            + (["--profile"] if args.profile else []) \
            + (["--ray-pose"] if args.ray_pose else [])
        ours_cmd = [args.bin, *common, "--device", args.device, "--precision", args.precision] + (["--unfused"] if args.unfused else [])
        ref_cmd = [sys.executable, os.path.join(HERE, "reference.py"), *common, "--device", ref_device, "--dtype", args.ref_dtype]
        if args.peak_tflops:
            ref_cmd.append("--flops")
        ours, ref = [], []
        for r in range(args.rounds):
            t0 = time.time()
            order = [(ours, ours_cmd), (ref, ref_cmd)]
            for results, cmd in order if r % 2 == 0 else order[::-1]:
                results.append(run(cmd, args.threads, args.autogroup_nice, args.timeout))
            print(f"{case} round {r + 1}/{args.rounds} ({time.time() - t0:.0f} s): "
                  f"da3 {min(ours[-1]['times_s']):.3f} s, reference {min(ref[-1]['times_s']):.3f} s", file=sys.stderr, flush=True)
        a, b = summarize(ours, views), summarize(ref, views)
        a["paired"] = paired_ratios(ours, ref)
        rows.append((model, f"{batch}x{scene_views}" if batch > 1 else str(scene_views), size, a, b))
        raw.append({"case": case, "da3": ours, "reference": ref, "da3_cmd": ours_cmd, "reference_cmd": ref_cmd})
        if args.profile:
            print_profile(case, ours, ref)
        if args.json:  # after every case, so a long run that dies keeps what it measured
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "cases": raw}, f, indent=1)

    gpu = any(a["gpu_peak_mb"] is not None for *_, a, _ in rows)
    print("\n| model | views (BxS: scenes x views) | size (HxW) | da3 ms/view min / median | reference ms/view min / median "
          "| time ratio median (min) | da3 views/s | reference views/s "
          "| da3 peak RSS MB | reference peak RSS MB | RSS ratio "
          + ("| da3 GPU MB | reference GPU MB " if gpu else "")
          + "| da3 load s | reference load s |")
    print("|---" * (15 if gpu else 13) + "|")
    for model, views, size, a, b in rows:
        gpu_cells = (f"| {a['gpu_peak_mb'] or 0:.0f} | {b['gpu_peak_mb'] or 0:.0f} " if gpu else "")
        print(f"| {model} | {views} | {size} | {1e3 * a['min_per_view']:.0f} / {1e3 * a['median_per_view']:.0f} "
              f"| {1e3 * b['min_per_view']:.0f} / {1e3 * b['median_per_view']:.0f} "
              f"| {a['median_per_view'] / b['median_per_view']:.2f} ({a['min_per_view'] / b['min_per_view']:.2f}) "
              f"| {a['views_per_s']:.2f} | {b['views_per_s']:.2f} "
              f"| {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {a['peak_rss_mb'] / b['peak_rss_mb']:.2f} "
              + gpu_cells
              + f"| {a['load_s']:.2f} | {b['load_s']:.2f} |")
    if args.peak_tflops:
        print(f"\nachieved TFLOP/s at the median pass (FLOPs per pass from the reference's flop counter; "
              f"peak {args.peak_tflops:g} TFLOP/s):")
        for (model, views, size, a, b), case in zip(rows, raw):
            flops = next((r["flops"] for r in case["reference"] if r.get("flops")), None)
            if not flops:
                continue
            per_pass = parse_case(case["case"], 1)
            fa, fb = (flops * s["views_per_s"] / (per_pass[1] * per_pass[2]) / 1e12 for s in (a, b))
            print(f"  {model} {views} views at {size}: {flops / 1e9:.0f} GFLOP per pass; da3 {fa:.1f} TFLOP/s "
                  f"({fa / args.peak_tflops:.1%} of peak), reference {fb:.1f} ({fb / args.peak_tflops:.1%})")
    print(f"\n(da3 --device {args.device} --precision {args.precision}{' --unfused' if args.unfused else ''} vs reference {ref_device} {args.ref_dtype}{'; both with use_ray_pose' if args.ray_pose else ''}; {args.threads} thread(s) "
          f"[reported: da3 {rows[0][3]['threads']}, reference {rows[0][4]['threads']}]; {args.rounds} rounds, "
          f"passes per process as in each case; load = min over rounds, page cache warm)")
    for model, views, size, a, b in rows:
        print(f"  {model} {views} views at {size}: passes da3 {a['passes']} / reference {b['passes']}; CPU time per wall second "
              f"da3 {a['cpu_per_wall'] or 0:.2f}, reference {b['cpu_per_wall'] or 0:.2f}; RSS at start / after load "
              f"da3 {a['rss_start_mb']:.0f} / {a['rss_loaded_mb']:.0f} MB, reference {b['rss_start_mb']:.0f} / "
              f"{b['rss_loaded_mb']:.0f} MB")
        paired = a["paired"]
        low, high, coverage = median_interval(paired)
        print(f"    paired time ratio (per round, da3 median / reference median): median {statistics.median(paired):.2f}, "
              f"range {min(paired):.2f}-{max(paired):.2f} over {len(paired)} rounds: "
              + " ".join(f"{p:.2f}" for p in paired)
              + f"; {coverage:.0%} interval for the median ratio: {low:.2f}-{high:.2f}")


if __name__ == "__main__":
    main()
