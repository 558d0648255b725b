#!/usr/bin/env python3
"""Golden fixtures for da3's pose alignment (`crates/da3/src/align.rs`).

Runs the reference's `utils/pose_align.py::align_poses_umeyama` (depth-anything-3==0.1.1, which
needs `pip install --no-deps evo` for its Umeyama) in float64 on synthetic cameras:

* `align_umeyama`: 6 views (< 10, plain Umeyama): the prediction is a known Sim(3) of the
  user's cameras plus noise;
* `align_ransac`: 12 views (>= 10, RANSAC) of which 3 are outliers.

The reference's RANSAC draws its subsets with `np.random.default_rng(42).choice(...)`; here
`default_rng` is replaced, inside `pose_align` only, by a generator that returns our draws:
SplitMix64 (`crates/da3/src/rng.rs`, re-implemented in `ray_pose.py`) seeded with 42, each
subset the first `sub_n` entries of a partial Fisher-Yates shuffle of the views. The draws are
stored so the Rust test checks that ours are these.

Stored (float64): `ext_ref` / `ext_est` [N,3,4] (prediction / user, world-to-camera),
`rotation` [3,3], `translation` [3], `scale` [1], `aligned` [N,3,4], and for RANSAC `samples`
[10, sub_n].

Usage: python3 tools/golden/align.py --out crates/da3/tests/fixtures
"""

import argparse
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import depth_anything_3.utils.pose_align as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ray_pose import SplitMix64  # noqa: E402

SEED = 42


class OurChoice:
    """Stands in for `np.random.default_rng(seed)`: `choice` returns our subsets."""

    def __init__(self, seed):
        self.rng = SplitMix64(seed)
        self.samples = []

    def choice(self, population, size, replace):
        assert not replace
        sample = self.rng.sample_distinct(len(population), size)
        self.samples.append(sample)
        return np.asarray(population)[sample]


def random_rotation(g):
    q = g.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def cameras(n, outliers, seed):
    """User cameras (world-to-camera 3x4) and predicted ones: a Sim(3) of the user's plus noise,
    with `outliers` views moved far off."""
    g = np.random.default_rng(seed)
    user, pred = [], []
    rot, s, t = random_rotation(g), 0.37, g.standard_normal(3)
    for i in range(n):
        R = random_rotation(g)  # camera-to-world
        C = 3.0 * g.standard_normal(3)
        user.append(np.concatenate([R.T, -(R.T @ C)[:, None]], 1))
        Rp = rot @ R
        Cp = s * rot @ C + t + 0.01 * g.standard_normal(3)
        if i in outliers:
            Cp = Cp + 2.0 * g.standard_normal(3)
        pred.append(np.concatenate([Rp.T, -(Rp.T @ Cp)[:, None]], 1))
    return np.stack(pred), np.stack(user)


def case(name, n, outliers, out_dir):
    ext_ref, ext_est = cameras(n, outliers, seed=n)
    ransac = n >= 10
    fake = OurChoice(SEED)
    saved = pa.np.random.default_rng
    pa.np.random.default_rng = lambda seed=None: fake
    try:
        r, t, s, aligned = pa.align_poses_umeyama(ext_ref, ext_est, ransac=ransac, return_aligned=True,
                                                  random_state=SEED)
    finally:
        pa.np.random.default_rng = saved
    tensors = {"ext_ref": ext_ref, "ext_est": ext_est, "rotation": r, "translation": t,
               "scale": np.array([s]), "aligned": aligned[:, :3]}
    if ransac:
        tensors["samples"] = np.array(fake.samples, dtype=np.float64)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in tensors.items()},
              os.path.join(out_dir, f"{name}.safetensors"))
    print(f"{name}: {n} views, ransac={ransac}, scale {s:.6f} (true 0.37)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    case("align_umeyama", 6, [], args.out)
    case("align_ransac", 12, [2, 7, 11], args.out)


if __name__ == "__main__":
    main()
