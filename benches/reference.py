#!/usr/bin/env python3
"""Times the reference PyTorch network (depth-anything-3==0.1.1) like da3-bench times ours.

Builds `DepthAnything3Net` from the preset's own YAML config, loads the same safetensors
weights (Hub layout, `model.` prefix), and runs forwards under `torch.inference_mode()` with
the given thread count. On the CPU it runs fp32 (the API's `forward` would autocast to fp16 on
CPU, which is slower and not what da3 computes); on CUDA `--dtype bf16|fp16` autocasts the
backbone as the reference API does (its heads stay fp32: they disable autocast themselves).

Prints one JSON line: {"impl": "reference", "load_s", "times_s": [...], "cpu_s": [...],
"rss_start_kb", "rss_loaded_kb", "peak_rss_kb", "device_peak_mb", "profile"}.
`--profile` adds the time of the backbone, the head and CameraDec per pass (forward hooks;
exact on the CPU, where every op is synchronous; on CUDA each hook synchronizes first).
"""

import argparse
import contextlib
import json
import resource
import sys
import time

import torch
from safetensors.torch import load_file

from depth_anything_3.cfg import create_object, load_config
from depth_anything_3.registry import MODEL_REGISTRY


def status_kb(field):
    """A /proc/self/status field in KiB (VmRSS, VmHWM); 0 where /proc is unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def stage_timer(net, device, names):
    """Forward hooks that add each named submodule's time to `totals` (seconds)."""
    totals = {n: 0.0 for n in names}
    starts = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def pre(name):
        def hook(_m, _inp):
            sync()
            starts[name] = time.perf_counter()
        return hook

    def post(name):
        def hook(_m, _inp, _out):
            sync()
            totals[name] += time.perf_counter() - starts[name]
        return hook

    for name in names:
        module = getattr(net, name, None)
        if module is not None:
            module.register_forward_pre_hook(pre(name))
            module.register_forward_hook(post(name))
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="preset name, e.g. da3-small")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--views", type=int, default=1, help="views per scene")
    ap.add_argument("--batch", type=int, default=1, help="independent scenes per forward pass ([B, S, 3, H, W])")
    ap.add_argument("--size", default="378x504")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                    help="autocast dtype of the backbone (CUDA; the CPU runs fp32)")
    ap.add_argument("--profile", action="store_true", help="also time backbone / head / cam_dec per pass")
    ap.add_argument("--op-profile", type=int, metavar="N",
                    help="after the timed passes, one pass under torch.profiler; its top N ops (self CPU time) go to stderr")
    ap.add_argument("--ray-pose", action="store_true",
                    help="use_ray_pose=True: poses from the ray map (its RANSAC runs too)")
    ap.add_argument("--flops", action="store_true",
                    help="count the FLOPs of one pass (torch.utils.flop_counter: matmuls, convolutions, attention)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = (int(v) for v in args.size.split("x"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rss_start = status_kb("VmRSS")

    start = time.perf_counter()
    net = create_object(load_config(MODEL_REGISTRY[args.model])).eval()
    state = {k[len("model."):]: v for k, v in load_file(args.weights).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    del state
    # save_model keeps one copy of the shared aux LayerNorm (see tools/golden/generate.py);
    # everything else must match.
    missing = [k for k in missing if ".output_conv2_aux." not in k]
    assert not missing and not unexpected, (missing, unexpected)
    net = net.to(device)
    sync()
    load_s = time.perf_counter() - start
    rss_loaded = status_kb("VmRSS")

    def images(seed):
        i = torch.arange(args.batch * args.views * 3 * h * w, dtype=torch.int64)
        x = (((i * 7919 + seed * 104729) % 1000).float() / 500.0 - 1.0).reshape(args.batch, args.views, 3, h, w)
        return x.to(device)

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())

    def forward(x):
        with autocast:
            out = net(x, use_ray_pose=args.ray_pose)
        sync()
        return out

    times, cpu = [], []
    with torch.inference_mode():
        forward(images(0))  # warm-up
        flops = None
        if args.flops:  # an extra untimed pass: the counter's dispatch hooks slow it down
            from torch.utils.flop_counter import FlopCounterMode
            counter = FlopCounterMode(display=False)
            with counter:
                forward(images(0))
            flops = counter.get_total_flops()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for it in range(args.iters):
            x = images(it + 1)
            sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            out = forward(x)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
            assert torch.isfinite(out.depth).all()
        profile = None
        if args.profile:
            totals = stage_timer(net, device, ["backbone", "head", "cam_dec"])
            stages = {f"{n}_s": [] for n in totals}
            stages["network_s"] = []
            for it in range(args.iters):
                x = images(1000 + it)
                sync()
                for n in totals:
                    totals[n] = 0.0
                start = time.perf_counter()
                forward(x)
                stages["network_s"].append(time.perf_counter() - start)
                for n, t in totals.items():
                    stages[f"{n}_s"].append(t)
            profile = stages
        if args.op_profile:
            from torch.profiler import ProfilerActivity, profile as torch_profile
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                forward(images(2000))
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.op_profile), file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "impl": "reference", "device": args.device, "dtype": args.dtype if device.type == "cuda" else "fp32",
        "model": args.model, "views": args.views, "batch": args.batch, "size": args.size, "threads": torch.get_num_threads(),
        "load_s": load_s, "times_s": times, "cpu_s": cpu,
        "rss_start_kb": rss_start, "rss_loaded_kb": rss_loaded, "peak_rss_kb": peak,
        "device_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "profile": profile, "flops": flops, "ray_pose": args.ray_pose,
    }))


if __name__ == "__main__":
    main()
