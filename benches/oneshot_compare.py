#!/usr/bin/env python3
"""Time to a depth map from the command line: one `da3 infer` process against one Python process
doing what the reference's `da3 image --export-format mini_npz` does, on the same image file and
weights, in the same run (alternating which goes first), ROUNDS times; prints each side's min and
median wall time (process start to exit) and their ratio.

What a user of a command line waits for: interpreter and library start-up, model construction and
weight loading, decoding and preprocessing, the first (cold) pass and writing the arrays; the
steady-state pass alone is `compare.py`'s.

The reference side (this script again, `--reference-child`, a fresh interpreter each round):
imports torch and the reference's API (`depth_anything_3.api`, with `tools/golden/e2e.py`'s
import stubs for the Hub mixin and the export-only modules; the real `da3` command also imports
its web-server stack, so it would only take longer), builds the preset's network from its own
YAML config, loads the safetensors, runs `DepthAnything3.inference([IMAGE], process_res=R)` (its
preprocessing, reference-view selection and output processing) and writes `depth`, `conf`,
`extrinsics` and `intrinsics` with `np.savez_compressed`, as its `mini_npz` export does. Its
network runs in fp32 as ours does (`e2e.py`'s forward without autocast); `--shipped` keeps the
reference's own forward instead, which on a CPU-only machine runs the network under fp16
autocast (what its users get there).

Ours: `da3 infer IMAGE -m CONFIG -w WEIGHTS --process-res R --out DIR --quiet` (`results.npz`
with the same keys, plus the 16-bit depth PNGs, the processed images and their JSON).

    cargo build --release -p da3-cli --no-default-features --features flex
    python3 benches/oneshot_compare.py --bin $CARGO_TARGET_DIR/release/da3 \
        --weights-dir ~/.cache/da3-real-goldens --model da3-small --threads 2 --rounds 5

WEIGHTS_DIR holds MODEL.config.json and MODEL.weights.safetensors (tools/golden/generate.py).
The reference side needs what tools/golden/e2e.py needs (tools/golden/requirements.txt, with
`pip install --no-deps torchvision evo depth-anything-3==0.1.1`).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
DEFAULT_IMAGE = os.path.join(ROOT, "crates/da3-cli/tests/fixtures/e2e/photo_640x427.jpg")

sys.path.insert(0, HERE)
import same_run  # noqa: E402  (autogroup wrapping, shared with the kernel comparisons)


def reference_child(args):
    """The reference's one-shot prediction (see the module docstring); everything it does counts."""
    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tools", "golden"))
    import e2e  # noqa: E402  (the reference API's import stubs and fp32 forward)

    torch.set_num_threads(args.threads)
    api = e2e.import_api()
    model = api.DepthAnything3(model_name=args.model)
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(args.weights), strict=False)
    # The checkpoint keeps one copy of the shared aux LayerNorm (see tools/golden/generate.py).
    missing = [k for k in missing if ".output_conv2_aux." not in k]
    assert not missing and not unexpected, (missing, unexpected)
    if not args.shipped:
        def forward_fp32(self, image, extrinsics=None, intrinsics=None, export_feat_layers=None, infer_gs=False,
                         use_ray_pose=False, ref_view_strategy="saddle_balanced"):
            with torch.inference_mode():
                return self.model(image, extrinsics, intrinsics, export_feat_layers, infer_gs, use_ray_pose,
                                  ref_view_strategy)

        api.DepthAnything3.forward = forward_fp32
    pred = model.inference([args.image], process_res=args.process_res)
    os.makedirs(args.out, exist_ok=True)
    arrays = {"depth": pred.depth, "conf": pred.conf, "extrinsics": pred.extrinsics, "intrinsics": pred.intrinsics}
    np.savez_compressed(os.path.join(args.out, "results.npz"), **{k: v for k, v in arrays.items() if v is not None})


def timed(cmd, nice, env):
    """Wall seconds of one process, start to exit (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(same_run.wrap(cmd, nice), env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="the release `da3` binary")
    ap.add_argument("--weights-dir", help="holds MODEL.config.json and MODEL.weights.safetensors")
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--process-res", type=int, default=504)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shipped", action="store_true",
                    help="the reference's own forward (fp16 autocast on a CPU-only machine) instead of fp32")
    ap.add_argument("--autogroup-nice", type=int, help="run each side in its own autogroup with this nice (root)")
    ap.add_argument("--reference-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_child:
        return reference_child(args)
    if not (args.bin and args.weights_dir):
        ap.error("--bin and --weights-dir are required")

    config = os.path.join(args.weights_dir, f"{args.model}.config.json")
    weights = os.path.join(args.weights_dir, f"{args.model}.weights.safetensors")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    times = {"da3": [], "reference": []}
    with tempfile.TemporaryDirectory() as tmp:
        ours = [args.bin, "infer", args.image, "-m", config, "-w", weights, "--process-res", str(args.process_res),
                "--out", os.path.join(tmp, "da3"), "--quiet"]
        ref = [sys.executable, os.path.abspath(__file__), "--reference-child", "--model", args.model,
               "--weights", weights, "--image", args.image, "--process-res", str(args.process_res),
               "--threads", str(args.threads), "--out", os.path.join(tmp, "reference")]
        if args.shipped:
            ref.append("--shipped")
        for r in range(args.rounds):
            sides = [("da3", ours), ("reference", ref)]
            for name, cmd in sides if r % 2 == 0 else sides[::-1]:
                times[name].append(timed(cmd, args.autogroup_nice, env))
            print(f"round {r + 1}: da3 {times['da3'][-1]:.2f} s, reference {times['reference'][-1]:.2f} s",
                  file=sys.stderr)
        # The same prediction on both sides: depth within the fp32 golden tests' tolerance
        # (the shipped reference's fp16 autocast is further off; reported, not checked).
        import numpy as np

        a, b = (np.load(os.path.join(tmp, side, "results.npz")) for side in ("da3", "reference"))
        err = float(np.linalg.norm(a["depth"] - b["depth"]) / np.linalg.norm(b["depth"]))
        if not args.shipped and err > 1e-3:
            sys.exit(f"depth differs from the reference's: relative L2 {err:.2e}")

    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    forward = "its own forward (fp16 autocast on CPU)" if args.shipped else "fp32"
    print(f"one-shot prediction, {args.model}, {os.path.basename(args.image)} at process_res {args.process_res}, "
          f"{args.threads} threads, {args.rounds} rounds; reference {forward}; depth relative L2 {err:.1e}")
    print("| side | median s | min s |")
    print("|---|---|---|")
    for k in ("da3", "reference"):
        print(f"| {k} | {med[k]:.2f} | {low[k]:.2f} |")
    print(f"\nda3 / reference: {med['da3'] / med['reference']:.2f} (median), {low['da3'] / low['reference']:.2f} (min)")


if __name__ == "__main__":
    main()
