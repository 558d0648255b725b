#!/usr/bin/env python3
"""JPEG decoding fixtures: small JPEG files of every layout the CLI meets, and what Pillow
decodes from each (`Image.open(path).convert("RGB")`, exactly the reference's
`InputProcessor` loading), stored losslessly as PNG.

The CLI decodes JPEG with libjpeg (the `mozjpeg` crate, plain C build) and converts CMYK the
way Pillow does; crates/da3-cli/tests/jpeg_pillow.rs checks its decoding of every `<case>.jpg`
against `<case>.png` sample by sample (bit-exact).

Cases (odd sizes; photo-like content with hard edges, which stress chroma upsampling):
  s420, s422, s444     Pillow, 4:2:0 / 4:2:2 / 4:4:4 chroma subsampling, quality 90
  s411, s440           OpenCV (IMWRITE_JPEG_SAMPLING_FACTOR_411 / _440)
  tiny_1x1, tiny_3x5   4:2:0 at sizes smaller than one chroma block
  gray                 1-component (Pillow mode "L"; convert("RGB") copies it to R, G, B)
  cmyk_adobe           Pillow's CMYK JPEG (Adobe APP14 marker, inverted samples)
  cmyk_plain           the same file without its APP14 marker (Pillow still inverts: it
                       "assumes Adobe conventions" for every CMYK JPEG)
  progressive          progressive 4:2:0 (Pillow progressive=True)
  progressive_gray     progressive grayscale
  optimized            Huffman tables optimized for the image (Pillow optimize=True)
  restart              restart markers every 3 MCUs (Pillow restart_marker_blocks=3)
  restart_rows         OpenCV IMWRITE_JPEG_RST_INTERVAL=1 (a restart marker after each MCU)
  exif_rot6            4:2:0 with EXIF Orientation = 6: Pillow's open/convert does not apply
                       it (and neither does the reference), so the expected image is unrotated
  quality_low          quality 20 (large coefficients, stronger clamping in the IDCT output)
  arithmetic           s420 losslessly transcoded to arithmetic coding (`jpegtran -arithmetic`,
                       Debian libjpeg-turbo-progs; the case is skipped where jpegtran is missing)
  arithmetic_prog      the same, progressive (`jpegtran -arithmetic -progressive`)

Usage: python3 tools/golden/jpeg.py [--out crates/da3-cli/tests/fixtures/jpeg]
Needs numpy, Pillow (13, bundling libjpeg-turbo 3.x) and opencv-python-headless.
"""

import argparse
import os
import shutil
import subprocess

import cv2
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")

W, H = 61, 43


def content(rng, h, w, channels):
    """Smooth gradients, a sinusoid, a few hard-edged rectangles and noise (uint8 HxWxC)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, channels))
    for c in range(channels):
        a = rng.uniform(-1, 1, 4)
        out[..., c] = 0.5 + 0.3 * (a[0] * yy / h + a[1] * xx / w) + 0.15 * np.sin(a[2] * xx / 3 + a[3] * yy / 4)
    for _ in range(4):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        out[y0:y0 + rng.integers(2, 12), x0:x0 + rng.integers(2, 12)] = rng.uniform(0, 1, channels)
    out += 0.03 * rng.standard_normal(out.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def exif_orientation(value):
    """An EXIF block holding only Orientation (tag 0x0112)."""
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def without_app14(data):
    """The JPEG bytes with every APP14 (Adobe) segment removed (segments before the first SOS)."""
    out, pos = bytearray(data[:2]), 2
    while pos < len(data):
        assert data[pos] == 0xFF, "marker expected"
        code = data[pos + 1]
        if code == 0xDA:  # start of scan: copy the rest unchanged
            out += data[pos:]
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if code != 0xEE:
            out += data[pos:pos + 2 + length]
        pos += 2 + length
    return bytes(out)


def cv2_jpeg(path, rgb, **params):
    flat = [v for kv in params.items() for v in (getattr(cv2, kv[0]), kv[1])]
    ok = cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90, *flat])
    assert ok, path


def write_cases(out_dir):
    rng = np.random.default_rng(20261122)
    rgb = content(rng, H, W, 3)
    img = Image.fromarray(rgb, "RGB")
    p = lambda name: os.path.join(out_dir, name + ".jpg")  # noqa: E731
    img.save(p("s420"), quality=90, subsampling=2)
    img.save(p("s422"), quality=90, subsampling=1)
    img.save(p("s444"), quality=90, subsampling=0)
    cv2_jpeg(p("s411"), rgb, IMWRITE_JPEG_SAMPLING_FACTOR=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411)
    cv2_jpeg(p("s440"), rgb, IMWRITE_JPEG_SAMPLING_FACTOR=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440)
    Image.fromarray(content(rng, 1, 1, 3), "RGB").save(p("tiny_1x1"), quality=90, subsampling=2)
    Image.fromarray(content(rng, 5, 3, 3), "RGB").save(p("tiny_3x5"), quality=90, subsampling=2)
    gray = Image.fromarray(content(rng, H, W, 1)[..., 0], "L")
    gray.save(p("gray"), quality=90)
    Image.fromarray(content(rng, H, W, 4), "CMYK").save(p("cmyk_adobe"), quality=90)
    with open(p("cmyk_adobe"), "rb") as f:
        adobe = f.read()
    assert b"Adobe" in adobe, "Pillow's CMYK JPEG should carry an Adobe marker"
    with open(p("cmyk_plain"), "wb") as f:
        f.write(without_app14(adobe))
    img.save(p("progressive"), quality=90, subsampling=2, progressive=True)
    gray.save(p("progressive_gray"), quality=90, progressive=True)
    img.save(p("optimized"), quality=90, subsampling=2, optimize=True)
    img.save(p("restart"), quality=90, subsampling=2, restart_marker_blocks=3)
    cv2_jpeg(p("restart_rows"), rgb, IMWRITE_JPEG_RST_INTERVAL=1)
    img.save(p("exif_rot6"), quality=90, subsampling=2, exif=exif_orientation(6))
    img.save(p("quality_low"), quality=20, subsampling=2)
    if shutil.which("jpegtran"):
        for name, extra in [("arithmetic", []), ("arithmetic_prog", ["-progressive"])]:
            subprocess.run(["jpegtran", "-arithmetic", *extra, "-outfile", p(name), p("s420")], check=True)
    else:
        print("jpegtran not found: arithmetic-coded cases skipped (apt-get install libjpeg-turbo-progs)")

    names = sorted(f[:-4] for f in os.listdir(out_dir) if f.endswith(".jpg"))
    for name in names:
        with Image.open(p(name)) as im:
            mode = im.mode
            decoded = im.convert("RGB")
        decoded.save(os.path.join(out_dir, name + ".png"))
        print(f"{name:18s} {mode:5s} {decoded.size[0]}x{decoded.size[1]}  {os.path.getsize(p(name))} B")
    assert Image.open(p("exif_rot6")).getexif().get(0x0112) == 6
    assert Image.open(p("restart")).info.get("progressive") is None
    assert Image.open(p("progressive")).info.get("progressive") == 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "crates/da3-cli/tests/fixtures/jpeg"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_cases(args.out)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
