#!/usr/bin/env python3
"""Times the reference PyTorch network (depth-anything-3==0.1.1) like da3-bench times ours.

Builds `DepthAnything3Net` from the preset's own YAML config, loads the same safetensors
weights (Hub layout, `model.` prefix), and runs fp32 forwards on the CPU under
`torch.inference_mode()` with the given thread count (the API's `forward` would autocast to
fp16 on CPU, which is slower and not what da3 computes). Prints one JSON line:
{"impl": "reference", "load_s", "times_s": [...], "peak_rss_kb"}.
"""

import argparse
import json
import resource
import time

import torch
from safetensors.torch import load_file

from depth_anything_3.cfg import create_object, load_config
from depth_anything_3.registry import MODEL_REGISTRY


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="preset name, e.g. da3-small")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--size", default="378x504")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))

    start = time.perf_counter()
    net = create_object(load_config(MODEL_REGISTRY[args.model])).eval()
    state = {k[len("model."):]: v for k, v in load_file(args.weights).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    # save_model keeps one copy of the shared aux LayerNorm (see tools/golden/generate.py);
    # everything else must match.
    missing = [k for k in missing if ".output_conv2_aux." not in k]
    assert not missing and not unexpected, (missing, unexpected)
    load_s = time.perf_counter() - start

    def images(seed):
        i = torch.arange(args.views * 3 * h * w, dtype=torch.int64)
        return (((i * 7919 + seed * 104729) % 1000).float() / 500.0 - 1.0).reshape(1, args.views, 3, h, w)

    times = []
    with torch.inference_mode():
        net(images(0))  # warm-up
        for it in range(args.iters):
            x = images(it + 1)
            start = time.perf_counter()
            out = net(x)
            times.append(time.perf_counter() - start)
            assert torch.isfinite(out.depth).all()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"impl": "reference", "device": "cpu", "load_s": load_s, "times_s": times, "peak_rss_kb": peak}))


if __name__ == "__main__":
    main()
