#!/usr/bin/env python3
"""Converts a Hub DA3 checkpoint (model.safetensors + config.json) into browser weight shards.

Writes OUT/model-00000.safetensors, ... (each at most --max-shard-mb, whole tensors, default fp16)
and OUT/manifest.json:

    {"format": "da3-shards/1", "model": NAME, "dtype": "f16", "config": {...config.json...},
     "files": [{"name": "model-00000.safetensors", "sha256": HEX, "bytes": N}, ...]}

The web page (web/weights.js) checks every shard's size and sha256 before use and keeps it in
the Cache API. Tensor names stay the Hub's (`model.backbone...`), so the Rust loader reads the
shards like the original file. fp16 halves the download; the model computes in fp32 (shards
are widened on upload). Needs only numpy (bf16 input is read without torch).

    python3 weights/shard.py --weights model.safetensors --config config.json --out web/weights/da3-small
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

FORMAT = "da3-shards/1"
NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
                "U8": np.uint8, "BOOL": np.bool_}
ST_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64",
            np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Reads every tensor of a safetensors file (bf16 widened to fp32), in file order."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        sys.exit(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = body[a:b]
        if t["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] in NUMPY_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(NUMPY_DTYPES[t["dtype"]]).newbyteorder("<"))
        else:
            sys.exit(f"{path}: tensor {name} has dtype {t['dtype']}, which this tool does not handle")
        out[name] = arr.reshape(t["shape"])
    return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    """Writes tensors as safetensors (little-endian, 8-byte aligned header)."""
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": ST_DTYPE[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def convert(tensor: np.ndarray, dtype: str) -> np.ndarray:
    """Floating tensors to the target dtype; integer tensors unchanged."""
    if not np.issubdtype(tensor.dtype, np.floating) or dtype == "keep":
        return tensor
    target = np.float16 if dtype == "f16" else np.float32
    if target == np.float16:
        big = np.abs(tensor[np.isfinite(tensor)]).max(initial=0.0)
        if big > 65504:
            sys.exit(f"a tensor holds {big:g}, beyond fp16's range; use --dtype f32")
    return tensor.astype(target)


def shard(weights: str, config: dict, out: str, dtype: str = "f16", max_shard_bytes: int = 32 << 20) -> dict:
    """Writes the shards and manifest.json into `out`; returns the manifest."""
    tensors = read_safetensors(weights)
    os.makedirs(out, exist_ok=True)
    groups, current, size = [], {}, 0
    for name, t in tensors.items():
        t = convert(t, dtype)
        if current and size + t.nbytes > max_shard_bytes:
            groups.append(current)
            current, size = {}, 0
        current[name] = t
        size += t.nbytes
    if current:
        groups.append(current)
    files = []
    for i, group in enumerate(groups):
        name = f"model-{i:05d}.safetensors"
        path = os.path.join(out, name)
        write_safetensors(path, group)
        with open(path, "rb") as f:
            blob = f.read()
        files.append({"name": name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)})
    manifest = {"format": FORMAT, "model": config.get("name") or config.get("model_name", "unknown"),
                "dtype": dtype, "config": config, "files": files}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="model.safetensors in the Hub layout")
    p.add_argument("--config", required=True, help="config.json of the model (Hub form or full da3 config)")
    p.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    p.add_argument("--dtype", choices=["f16", "f32", "keep"], default="f16", help="dtype of floating tensors (default f16)")
    p.add_argument("--max-shard-mb", type=float, default=32.0, help="largest shard in MiB (a bigger tensor gets its own shard)")
    a = p.parse_args()
    with open(a.config) as f:
        config = json.load(f)
    m = shard(a.weights, config, a.out, a.dtype, int(a.max_shard_mb * (1 << 20)))
    total = sum(f["bytes"] for f in m["files"])
    print(f"{a.out}: {len(m['files'])} shard(s), {total / 1e6:.1f} MB, {a.dtype}")


if __name__ == "__main__":
    main()
