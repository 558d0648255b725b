#!/usr/bin/env python3
"""Golden fixtures for da3's image preprocessing (crates/da3/src/preprocess).

Runs the reference's own `InputProcessor` (depth-anything-3==0.1.1,
utils/io/input_processor.py) on small synthetic images written as PNG files (so Pillow opens
them exactly as the reference CLI does, 16-bit layouts included) and records, per case, the
processed uint8 image (recovered exactly from the normalized tensor), the output size and the
camera matrices for float32 and float64 input intrinsics. Each case runs twice: with
OpenCV's IPP on (the x86-64 default) and off (`cv2.ipp.setUseIPP(False)`, what the ARM64
wheels compute); the second output is stored only where it differs.

Writes crates/da3/tests/fixtures/preprocess/preprocess.safetensors:
  <case>.src          the source samples (uint8 or uint16, HxWxC)
  <case>.out          the reference's processed image, uint8 HxWx3 (IPP on)
  <case>.plain_idx    with IPP off: flat indices of the samples that differ (only when some do)
  <case>.plain_val    ... and their values there
  <case>.k_in         input intrinsics, float64 [3,3] (the float32 run uses it cast to f32)
  <case>.k64_out      output intrinsics of the float64 run (float32, as the reference returns)
  <case>.k32_out      output intrinsics of the float32 run
  batch.*             a batch of two differently shaped images (the batch centre crop)
  norm.tensor         the normalized float32 tensor [3,H,W] of case `norm_case`
  norm.processed      the reference's `processed_images` (api.py `_add_processed_images`) for it
and `__metadata__["cases"]`, a JSON list describing every case, plus large cases generated
from an integer formula at test time (see `pattern`) whose outputs are stored as FNV-1a-64
hashes only.

Usage:
  python3 tools/golden/preprocess.py [--ref /tmp/ref] [--out crates/da3/tests/fixtures/preprocess]

Needs numpy, Pillow, opencv-python-headless (4.11, x86-64 for the IPP outputs), torch,
safetensors and torchvision (only its pure-Python transforms are used:
`pip install --no-deps torchvision` is enough), plus the reference package's source
(`pip download --no-deps depth-anything-3==0.1.1` unpacked; `--ref` points at the folder
holding `depth_anything_3/`). `imageio` and `tqdm` are replaced by inert stubs when missing:
the preprocessing never calls the former and uses the latter only as an iterator wrapper.
"""

import argparse
import ast
import importlib.machinery
import json
import os
import struct
import sys
import tempfile
import types
import zlib

import cv2
import numpy as np
from safetensors.numpy import save_file

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def stub_module(name, **attrs):
    """Puts an inert module `name` into sys.modules unless the real one imports."""
    try:
        __import__(name)
    except ImportError:
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        m.__dict__.update(attrs)
        sys.modules[name] = m


def write_png(path, a):
    """Minimal PNG writer: HxW or HxWxC (C = 1..4), uint8 or uint16 (big-endian samples)."""
    a = a if a.ndim == 3 else a[..., None]
    h, w, c = a.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 16 if a.dtype == np.uint16 else 8
    raw = a.astype(">u2" if depth == 16 else np.uint8)
    data = b"".join(b"\x00" + raw[y].tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def photo(rng, h, w, c, maxval=255):
    """A smooth photo-like image: coloured blobs, a gradient, a hard-edged box and mild noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, c))
    for _ in range(5):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, max(w, h) / 2)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))[..., None] * rng.uniform(0, 1, c)
    img += (xx / w)[..., None] * rng.uniform(0, 0.5, c)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.uniform(0, 1.2, c)
    img = img / img.max() + rng.normal(0, 0.02, img.shape)
    return np.clip(np.rint(img * maxval), 0, maxval).astype(np.uint8 if maxval == 255 else np.uint16)


def pattern(w, h):
    """The large test image, also computed in crates/da3/tests/preprocess.rs: RGB8 with
    v(x, y, c) = (x * (c + 3) + y * (2c + 5) + (x * y >> 5) + ((x ^ y) & 31)) & 255."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    chans = [(x * (c + 3) + y * (2 * c + 5) + ((x * y) >> 5) + ((x ^ y) & 31)) & 255 for c in range(3)]
    return np.stack(chans, -1).astype(np.uint8)


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for byte in b:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def to_uint8(tensor):
    """The uint8 image behind a normalized [3,H,W] tensor; asserts the inversion is exact."""
    lut = ((np.arange(256, dtype=np.float32)[None, :] / np.float32(255)) - MEAN[:, None]) / STD[:, None]
    t = tensor.numpy()
    out = np.zeros(t.shape[1:] + (3,), np.uint8)
    for c in range(3):
        idx = np.searchsorted(lut[c], t[c])
        idx = np.clip(idx, 0, 255)
        assert np.array_equal(lut[c][idx], t[c]), "normalized values are not (v/255 - mean)/std"
        out[..., c] = idx
    return out


def intrinsics_for(w, h):
    return np.array([[1.2345 * w, 0.0, w / 2 + 0.37], [0.0, 1.1111 * h, h / 2 - 0.21], [0.0, 0.0, 1.0]])


def load_add_processed_images(ref):
    """`DepthAnything3._add_processed_images` from the reference's api.py, compiled alone
    (importing api.py would need the hub client and the whole model)."""
    src = open(os.path.join(ref, "depth_anything_3", "api.py")).read()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and node.name == "_add_processed_images":
            node.returns = None
            for a in node.args.args:
                a.annotation = None
            ns = {"np": np}
            exec(compile(ast.Module(body=[node], type_ignores=[]), "api.py", "exec"), ns)
            return ns["_add_processed_images"]
    raise RuntimeError("_add_processed_images not found in api.py")


# (name, format, width, height); format names follow da3's `Pixels`.
SOURCES = [
    ("rgb97x61", "rgb8", 97, 61),
    ("rgb61x97", "rgb8", 61, 97),
    ("rgba90x60", "rgba8", 90, 60),
    ("gray50x37", "gray8", 50, 37),
    ("la40x30", "gray-alpha8", 40, 30),
    ("rgb84x56", "rgb8", 84, 56),
    ("gray16_64x48", "gray16", 64, 48),
    ("la16_36x28", "gray-alpha16", 36, 28),
    ("rgb16_45x70", "rgb16", 45, 70),
    ("rgba16_33x21", "rgba16", 33, 21),
]
CHANNELS = {"rgb8": 3, "rgba8": 4, "gray8": 1, "gray-alpha8": 2, "gray16": 1, "gray-alpha16": 2, "rgb16": 3, "rgba16": 4}

# (source, process_res, method)
ALL = ["upper_bound_resize", "upper_bound_crop", "lower_bound_resize", "lower_bound_crop"]
CASES = (
    [("rgb97x61", 70, m) for m in ALL[:2]] + [("rgb97x61", 56, m) for m in ALL[2:]]  # area / cubic
    + [("rgb97x61", 140, "upper_bound_resize")]  # upscale (cubic), then area to 84
    + [("rgb61x97", 70, m) for m in ALL[:2]] + [("rgb61x97", 56, m) for m in ALL[2:]]  # taller
    + [("rgba90x60", 84, "upper_bound_resize"), ("rgba90x60", 70, "lower_bound_crop")]
    + [("gray50x37", 84, "upper_bound_resize"), ("gray50x37", 50, "lower_bound_resize")]
    + [("la40x30", 60, "upper_bound_resize")]
    + [("rgb84x56", 42, "upper_bound_resize"), ("rgb84x56", 21, "upper_bound_resize")]  # 2x / 4x box
    + [("rgb84x56", 28, "lower_bound_resize"), ("rgb84x56", 84, "upper_bound_crop")]  # 2x; none
    + [("gray16_64x48", 56, "upper_bound_resize"), ("la16_36x28", 56, "upper_bound_resize")]
    + [("rgb16_45x70", 84, "upper_bound_crop"), ("rgba16_33x21", 42, "lower_bound_resize")]
)
NORM_CASE = "rgb84x56.21.upper_bound_resize"
BATCH = (["rgb97x61", "rgb61x97", "rgb84x56"], 70, "upper_bound_resize")
# Large cases from `pattern`: (width, height, process_res, method, ipp)
LARGE = [
    (1920, 1080, 504, "upper_bound_resize", True),  # 504x284 (area) -> 504x280 (area)
    (1920, 1080, 504, "upper_bound_crop", True),
    (1920, 1080, 504, "lower_bound_resize", True),  # 896x504 (area)
    (300, 170, 504, "upper_bound_resize", False),  # 504x286 (cubic) -> 504x280, IPP off
    (170, 300, 504, "lower_bound_crop", False),  # 504x889 (cubic) -> crop 504x882, IPP off
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="/tmp/ref", help="folder holding the reference's depth_anything_3/")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../crates/da3/tests/fixtures/preprocess"))
    args = ap.parse_args()
    sys.path.insert(0, args.ref)
    stub_module("imageio")
    stub_module("tqdm", tqdm=lambda it, **kw: it)
    from depth_anything_3.utils.io.input_processor import InputProcessor

    proc = InputProcessor()
    add_processed_images = load_add_processed_images(args.ref)
    rng = np.random.default_rng(20251121)
    tmp = tempfile.mkdtemp()
    tensors, meta, srcs = {}, [], {}
    for name, fmt, w, h in SOURCES:
        a = photo(rng, h, w, CHANNELS[fmt], 65535 if fmt.endswith("16") else 255)
        if fmt == "gray16":
            a = (a.astype(np.uint32) * 600 // 65535).astype(np.uint16)  # 0..600: some clip at 255
        path = os.path.join(tmp, name + ".png")
        write_png(path, a)
        srcs[name] = (path, fmt, w, h)
        tensors[name + ".src"] = np.ascontiguousarray(a if a.ndim == 3 else a[..., None])

    def run(paths, res, method, k, ipp):
        cv2.ipp.setUseIPP(ipp)
        try:
            out, _, k_out = proc(image=paths, intrinsics=k, process_res=res, process_res_method=method, num_workers=1)
        finally:
            cv2.ipp.setUseIPP(True)
        return out, (k_out.numpy() if k_out is not None else None)

    for src, res, method in CASES:
        path, fmt, w, h = srcs[src]
        case = f"{src}.{res}.{method}"
        k = intrinsics_for(w, h)
        t64, k64 = run([path], res, method, k[None], True)
        t32, k32 = run([path], res, method, k[None].astype(np.float32), True)
        tp, _ = run([path], res, method, None, False)
        assert np.array_equal(t64, t32)
        out, plain = to_uint8(t64[0]), to_uint8(tp[0])
        tensors[case + ".out"] = out
        if not np.array_equal(out, plain):
            idx = np.flatnonzero(out.ravel() != plain.ravel())
            tensors[case + ".plain_idx"] = idx.astype(np.uint32)
            tensors[case + ".plain_val"] = plain.ravel()[idx]
        tensors[case + ".k_in"] = k
        tensors[case + ".k64_out"] = k64[0].astype(np.float32)
        tensors[case + ".k32_out"] = k32[0].astype(np.float32)
        if case == NORM_CASE:
            tensors["norm.tensor"] = t64[0].numpy()
            pred = types.SimpleNamespace()
            add_processed_images(None, pred, t64[:1])
            tensors["norm.processed"] = pred.processed_images[0]
        meta.append({"case": case, "source": src, "format": fmt, "process_res": res, "method": method,
                     "size": [out.shape[1], out.shape[0]], "plain_differs": case + ".plain_idx" in tensors})

    names, res, method = BATCH
    paths = [srcs[n][0] for n in names]
    ks = np.stack([intrinsics_for(srcs[n][2], srcs[n][3]) for n in names])
    t, kb = run(paths, res, method, ks.astype(np.float32), True)
    for i in range(len(names)):
        tensors[f"batch.out.{i}"] = to_uint8(t[i])
    tensors["batch.k_in"] = ks
    tensors["batch.k32_out"] = kb.astype(np.float32)
    batch_meta = {"sources": names, "process_res": res, "method": method}

    large = []
    for w, h, res, method, ipp in LARGE:
        path = os.path.join(tmp, f"pattern{w}x{h}.png")
        write_png(path, pattern(w, h))
        k = intrinsics_for(w, h)
        t, ko = run([path], res, method, k[None], ipp)
        out = to_uint8(t[0])
        large.append({"width": w, "height": h, "process_res": res, "method": method, "ipp": ipp,
                      "size": [out.shape[1], out.shape[0]], "fnv1a64": fnv1a64(out.tobytes()),
                      "k_in": k.tolist(), "k64_out": ko[0].astype(np.float32).astype(float).tolist()})

    os.makedirs(args.out, exist_ok=True)
    file = os.path.join(args.out, "preprocess.safetensors")
    metadata = {"cases": json.dumps(meta), "batch": json.dumps(batch_meta), "large": json.dumps(large),
                "norm_case": NORM_CASE, "opencv": cv2.__version__, "ipp": cv2.ipp.getIppVersion()}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, file, metadata=metadata)
    print(f"wrote {file}: {os.path.getsize(file)} bytes, {len(meta)} cases, {len(large)} large cases")
    for m in meta:
        print(f"  {m['case']:40s} {m['format']:13s} -> {m['size'][0]}x{m['size'][1]}"
              f"{'  (IPP and plain differ)' if m['plain_differs'] else ''}")


if __name__ == "__main__":
    main()
