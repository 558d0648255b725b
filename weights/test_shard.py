"""Round trip of weights/shard.py: shards -> the same tensors within fp16 rounding.

Run: python3 -m unittest weights/test_shard.py  (numpy + safetensors, which reads back
independently of the converter's own reader/writer).
"""

import hashlib
import json
import os
import sys
import tempfile
import unittest

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(__file__))
import shard  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
TINY = os.path.join(ROOT, "crates/da3/tests/fixtures/tiny.weights.safetensors")
TINY_CONFIG = os.path.join(ROOT, "crates/da3/tests/fixtures/tiny.config.json")


class ShardRoundTrip(unittest.TestCase):
    def convert(self, dtype, max_bytes):
        out = tempfile.mkdtemp()
        with open(TINY_CONFIG) as f:
            config = json.load(f)
        manifest = shard.shard(TINY, config, out, dtype, max_bytes)
        merged = {}
        for entry in manifest["files"]:
            path = os.path.join(out, entry["name"])
            blob = open(path, "rb").read()
            self.assertEqual(hashlib.sha256(blob).hexdigest(), entry["sha256"])
            self.assertEqual(len(blob), entry["bytes"])
            part = load_file(path)
            self.assertFalse(set(part) & set(merged), "a tensor is in two shards")
            merged.update(part)
        with open(os.path.join(out, "manifest.json")) as f:
            self.assertEqual(json.load(f), manifest)
        return manifest, merged

    def test_f16_shards_hold_every_tensor_within_fp16_rounding(self):
        original = load_file(TINY)
        manifest, merged = self.convert("f16", 200_000)
        self.assertGreater(len(manifest["files"]), 3, "expected several shards at 200 kB")
        self.assertEqual(manifest["config"]["name"], "tiny")
        self.assertEqual(set(merged), set(original))
        worst = 0.0
        for name, x in original.items():
            y = merged[name]
            self.assertEqual(y.shape, x.shape, name)
            self.assertEqual(y.dtype, np.float16, name)
            # Exactly numpy's round-to-nearest fp16, i.e. within half an fp16 ulp (2^-11 relative).
            np.testing.assert_array_equal(y, x.astype(np.float16), err_msg=name)
            rel = np.abs(y.astype(np.float32) - x) / np.maximum(np.abs(x), 2.0**-14)
            worst = max(worst, float(rel.max()))
        self.assertLessEqual(worst, 2.0**-11)
        self.assertGreater(worst, 0.0, "fp16 rounding should change some values")

    def test_f32_shards_are_bit_exact(self):
        original = load_file(TINY)
        _, merged = self.convert("f32", 1 << 20)
        for name, x in original.items():
            np.testing.assert_array_equal(merged[name], x, err_msg=name)
            self.assertEqual(merged[name].dtype, np.float32)

    def test_bf16_input_is_widened(self):
        src = tempfile.mkdtemp()
        path = os.path.join(src, "bf16.safetensors")
        x = np.array([1.0, -2.5, 3.140625, 1e-3], np.float32)
        bits = (x.view(np.uint32) >> 16).astype("<u2")
        header = json.dumps({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
        header += b" " * (-len(header) % 8)
        with open(path, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header + bits.tobytes())
        got = shard.read_safetensors(path)["w"]
        np.testing.assert_array_equal(got, (bits.astype(np.uint32) << 16).view(np.float32))
        self.assertEqual(got[1], -2.5)


if __name__ == "__main__":
    unittest.main()
