#!/usr/bin/env python3
"""End-to-end golden: the reference API's `DepthAnything3.inference()` on odd-sized image files.

Builds the reference API object around the tiny random-weight network of generate.py (the
committed `tiny.weights.safetensors`, checked value by value), writes small odd-sized input
files and photo-like JPEGs, and runs `inference()` on the file paths, exactly as a user would:

  default   process_res 504, upper_bound_resize (the API defaults) on the three small inputs:
            their processed images differ in size, so the reference centre-crops them to the
            smallest (280x336)
  lb_crop   process_res 140, lower_bound_crop on the three small inputs (area downscaling,
            crops; 140x140)
  photos    process_res 504 on the three photo-like JPEGs 1920x1080, 640x427 and 427x640
            (504x280, 504x336 and 336x504, batch-cropped to 336x280)
  photo_hd  process_res 504 on photo_1920x1080.jpg alone (504x280, no crop)
  portrait  process_res 504 on photo_427x640.jpg alone (336x504)

Inputs (committed beside the golden, in crates/da3-cli/tests/fixtures/e2e/):
  photo_173x311.jpg   RGB JPEG (4:2:0, quality 90), 173 wide, 311 high
  alpha_300x200.png   RGBA PNG (alpha dropped by Pillow's convert("RGB"))
  gray_143x97.png     8-bit grayscale PNG
  photo_1920x1080.jpg, photo_640x427.jpg, photo_427x640.jpg
                      photo-like RGB JPEGs (4:2:0, quality 85): gradients, soft and hard-edged
                      shapes, fine texture and noise

JPEG inputs are decoded by the CLI exactly as Pillow decodes them (libjpeg, see
tools/golden/jpeg.py), so they take part in the parity like the PNG files.

Golden `e2e.golden.npz` (compressed), per case C:
  C.processed   [S,H/k,W/k,3] uint8  `prediction.processed_images[:, ::k, ::k]` (what the
                                 reference's npz export stores as `image`; k = C.image_stride,
                                 1 for the small cases)
  C.depth       [S,H/k,W/k] f32  `prediction.depth[:, ::k, ::k]` (k = C.stride; strided to keep
  C.conf        [S,H/k,W/k] f32  the fixture small; every k-th row and column)
  C.extrinsics  [S,3,4] f32, C.intrinsics [S,3,3] f32
  C.stride      [1], C.image_stride [1], C.size [2] (H, W): float32, so that the tests' npy
                                 reader reads them

fp32: the reference's `DepthAnything3.forward` runs the network under
`torch.autocast(device_type=image.device.type, dtype=float16)` when CUDA has no bf16, i.e.
also on a CPU-only machine, which makes the reference less exact (and slower) than its own
fp32 network. The generator replaces that method with the same call without autocast (under
`torch.inference_mode()`); everything else (`InputProcessor`, reference-view selection,
`OutputProcessor`, `_add_processed_images`) is the reference's own code.

Import stubs (modules the inference path never calls): `huggingface_hub` (the Hub mixin base
class), `depth_anything_3.utils.export` (export is only used with export_dir), `imageio`,
`tqdm`. Needs torch, numpy<2, Pillow, opencv-python-headless (x86-64: IPP cubic upscaling),
`pip install --no-deps torchvision` (pure-Python transforms only), evo, addict, einops,
omegaconf, safetensors, `depth-anything-3==0.1.1` (see requirements.txt).

Usage: python3 tools/golden/e2e.py [--out crates/da3-cli/tests/fixtures/e2e]
"""

import argparse
import importlib.machinery
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
from preprocess import stub_module as stub  # noqa: E402  (the same stubbing as the preprocess goldens)

SMALL = ["photo_173x311.jpg", "alpha_300x200.png", "gray_143x97.png"]
PHOTOS = ["photo_1920x1080.jpg", "photo_640x427.jpg", "photo_427x640.jpg"]
CASES = [
    # name, inputs, process_res, method, depth/conf stride, processed-image stride
    ("default", SMALL, 504, "upper_bound_resize", 4, 1),
    ("lb_crop", SMALL, 140, "lower_bound_crop", 2, 1),
    ("photos", PHOTOS, 504, "upper_bound_resize", 8, 4),
    ("photo_hd", PHOTOS[:1], 504, "upper_bound_resize", 8, 4),
    ("portrait", PHOTOS[2:], 504, "upper_bound_resize", 8, 4),
]


def import_api():
    class PyTorchModelHubMixin:  # only a base class of DepthAnything3 here
        pass

    stub("huggingface_hub", PyTorchModelHubMixin=PyTorchModelHubMixin)
    stub("imageio")
    stub("tqdm", tqdm=lambda it, **kw: it)

    def no_export(*a, **k):
        raise RuntimeError("export is stubbed out in tools/golden/e2e.py")

    m = types.ModuleType("depth_anything_3.utils.export")
    m.export = no_export
    sys.modules["depth_anything_3.utils.export"] = m
    import depth_anything_3.api as api

    return api


def photo(rng, h, w, channels):
    """Photo-like uint8 content: smooth colour gradients, a few soft shapes and mild noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, channels))
    for c in range(channels):
        a = rng.uniform(-1, 1, 6)
        v = 0.5 + 0.25 * (a[0] * yy / h + a[1] * xx / w)
        v += 0.15 * np.sin(2 * np.pi * (a[2] * 3 * xx / w + a[3] * 2 * yy / h))
        cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.3) * min(h, w)
        v += 0.2 * a[4] * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        v += 0.01 * rng.standard_normal((h, w))
        out[..., c] = v
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def photo_scene(rng, h, w):
    """A photo-like RGB scene (uint8 HxWx3): `photo` plus hard-edged discs and rectangles and a
    fine texture, the kind of content whose chroma edges JPEG decoders handle differently."""
    out = photo(rng, h, w, 3).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(12):
        colour = rng.uniform(0, 255, 3)
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.03, 0.15) * min(h, w)
        if rng.uniform() < 0.5:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        else:
            mask = (abs(yy - cy) < r) & (abs(xx - cx) < 1.6 * r)
        out[mask] = 0.7 * colour + 0.3 * out[mask]
    out += (12 * np.sin(xx / 1.7) * np.sin(yy / 2.3) * (xx > w // 2))[..., None]
    return np.clip(out, 0, 255).round().astype(np.uint8)


def write_inputs(out_dir):
    rng = np.random.default_rng(20251121)
    for name in SMALL + PHOTOS:
        w, h = map(int, name.split("_")[1].split(".")[0].split("x"))
        path = os.path.join(out_dir, name)
        if name in PHOTOS:
            Image.fromarray(photo_scene(rng, h, w), "RGB").save(path, quality=85, subsampling=2)
        elif name.startswith("photo"):
            Image.fromarray(photo(rng, h, w, 3), "RGB").save(path, quality=90, subsampling=2)
        elif name.startswith("alpha"):
            a = photo(rng, h, w, 4)
            a[..., 3] = np.clip(a[..., 3].astype(int) + 60, 0, 255)  # partly transparent
            Image.fromarray(a, "RGBA").save(path)
        else:
            Image.fromarray(photo(rng, h, w, 1)[..., 0], "L").save(path)


def reference_api(api_mod):
    """`DepthAnything3` around the tiny network, built without its config registry."""
    import family

    net = family.tiny_net("tiny", os.path.join(ROOT, "crates/da3/tests/fixtures"))
    D = api_mod.DepthAnything3
    model = D.__new__(D)
    nn.Module.__init__(model)
    model.model_name = "tiny"
    model.model = net.eval()
    model.input_processor = api_mod.InputProcessor()
    model.output_processor = api_mod.OutputProcessor()
    model.device = None

    def forward_fp32(self, image, extrinsics=None, intrinsics=None, export_feat_layers=None, infer_gs=False,
                     use_ray_pose=False, ref_view_strategy="saddle_balanced"):
        # The reference's forward without its fp16 autocast (see the module docstring).
        with torch.inference_mode():
            return self.model(image, extrinsics, intrinsics, export_feat_layers, infer_gs, use_ray_pose,
                              ref_view_strategy)

    D.forward = forward_fp32
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "crates/da3-cli/tests/fixtures/e2e"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    api_mod = import_api()
    model = reference_api(api_mod)
    write_inputs(args.out)
    golden = {}
    for name, inputs, res, method, stride, image_stride in CASES:
        paths = [os.path.join(args.out, n) for n in inputs]
        pred = model.inference(paths, process_res=res, process_res_method=method)
        s, h, w = pred.depth.shape
        assert pred.processed_images.shape == (s, h, w, 3) and pred.processed_images.dtype == np.uint8
        golden[f"{name}.processed"] = np.ascontiguousarray(pred.processed_images[:, ::image_stride, ::image_stride])
        golden[f"{name}.depth"] = np.ascontiguousarray(pred.depth[:, ::stride, ::stride], np.float32)
        golden[f"{name}.conf"] = np.ascontiguousarray(pred.conf[:, ::stride, ::stride], np.float32)
        golden[f"{name}.extrinsics"] = np.asarray(pred.extrinsics, np.float32)[:, :3, :]
        golden[f"{name}.intrinsics"] = np.asarray(pred.intrinsics, np.float32)
        golden[f"{name}.stride"] = np.array([stride], np.float32)
        golden[f"{name}.image_stride"] = np.array([image_stride], np.float32)
        golden[f"{name}.size"] = np.array([h, w], np.float32)
        print(f"{name}: {s} views {w}x{h}, depth {pred.depth.min():.4f}..{pred.depth.max():.4f}, "
              f"fx {pred.intrinsics[:, 0, 0]}")
    path = os.path.join(args.out, "e2e.golden.npz")
    np.savez_compressed(path, **golden)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {path}; fixture folder {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
