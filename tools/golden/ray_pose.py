#!/usr/bin/env python3
"""Golden fixtures for da3's ray-pose path (`crates/da3/src/ray_pose.rs`).

The reference (`depth-anything-3==0.1.1`, `utils/ray_utils.py`) draws its RANSAC samples with
`torch.randperm`, which no other implementation can reproduce. So this script runs the
reference's own functions with the draws replaced by ours:

* ours come from SplitMix64 (`crates/da3/src/rng.rs`), re-implemented below bit for bit: one
  stream seeded by the caller gives first the 100 RANSAC samples (8 distinct positions each in
  the candidate pool, by a partial Fisher-Yates shuffle), then, view by view, the 8000 refit
  positions of every view that has more than 8000 inliers;
* the 100 samples enter through `get_params_for_ransac` (the one place the reference makes
  them) and the refit draws through `torch.randperm`, patched only while the reference runs.
  Because both sides draw the refit positions under the same condition and in the same view
  order, the streams stay in step. The fixture also stores the samples so the Rust test checks
  that our draws are these.

Two reference runs per case:
* `ref32`: the reference as it runs, `DepthAnything3Net._process_ray_pose_estimation` in fp32
  (ray map -> world-to-camera 3x4 and pixel intrinsics);
* `ref64`: `compute_optimal_rotation_intrinsics_batch` in float64 with the same draws (its
  `ql_decomposition` hard-codes a float32 permutation matrix; here it follows A's dtype) plus
  the reference's centre and conversion formulas, to check our f64 port tightly.

Cases:
* `ray_pose_synthetic`: 2 views, a 96x112 ray map made from known cameras (centred principal
  point, as the decomposition assumes), direction noise, 10 % outlier rays and random
  confidences; > 8000 inliers, so the refit draw is exercised. The true cameras are stored too.
* `ray_pose_tiny`: the ray map and confidence of the tiny random-weight model
  (`tiny_s3_posed.golden.safetensors`, 3 views, 24x32 rays for a 42x56 image).

Usage: python3 tools/golden/ray_pose.py --out crates/da3/tests/fixtures
"""

import argparse
import math
import os

import numpy as np
import torch
from addict import Dict
from safetensors.torch import load_file, save_file

import depth_anything_3.utils.ray_utils as ru
from depth_anything_3.model.da3 import DepthAnything3Net
from depth_anything_3.utils.geometry import affine_inverse

MASK = (1 << 64) - 1


class SplitMix64:
    """`crates/da3/src/rng.rs::SplitMix64`."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next_u64() * n) >> 64

    def sample_distinct(self, n, k):
        swapped, out = {}, []
        for i in range(k):
            j = i + self.below(n - i)
            at_j, at_i = swapped.get(j, j), swapped.get(i, i)
            swapped[j] = at_i
            out.append(at_j)
        return out


N_ITER, N_POINTS = 100, 8


def our_draws(seed, n):
    """Our sample table and the generator positioned for the refit draws."""
    n_sample = max(N_POINTS, int(n * 0.3))
    rng = SplitMix64(seed)
    table = [rng.sample_distinct(n_sample, N_POINTS) for _ in range(N_ITER)]
    return n_sample, table, rng


class Patched:
    """Feeds the reference our samples and refit draws; records the refit inputs."""

    def __init__(self, seed, n):
        self.n_sample, self.table, self.rng = our_draws(seed, n)
        self.refit_counts, self.refit_h, self.draw_sizes = [], [], []

    def __enter__(self):
        self.saved = (ru.get_params_for_ransac, torch.randperm, ru.find_homography_least_squares_weighted_torch)
        original_fit = self.saved[2]

        def params(n, device):
            return N_ITER, N_POINTS, self.n_sample, torch.tensor(self.table, dtype=torch.long)

        def randperm(k, device=None, **kw):
            draw = self.rng.sample_distinct(k, 8000)
            self.draw_sizes.append(k)
            chosen = set(draw)
            return torch.tensor(draw + [i for i in range(k) if i not in chosen], dtype=torch.long)

        def fit(src, dst, w):
            h = original_fit(src, dst, w)
            self.refit_counts.append(src.shape[0])
            self.refit_h.append(h.clone())
            return h

        ru.get_params_for_ransac, torch.randperm, ru.find_homography_least_squares_weighted_torch = params, randperm, fit
        return self

    def __exit__(self, *exc):
        ru.get_params_for_ransac, torch.randperm, ru.find_homography_least_squares_weighted_torch = self.saved


def ql_any_dtype(A):
    """`ray_utils.ql_decomposition` with P in A's dtype (the original hard-codes float32)."""
    P = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0]], device=A.device, dtype=A.dtype)
    A_tilde = torch.matmul(A, P)
    Q_tilde, R_tilde = torch.linalg.qr(A_tilde)
    Q = torch.matmul(Q_tilde, P)
    L = torch.matmul(torch.matmul(P, R_tilde), P)
    d = torch.diag(L)
    Q[:, 0] *= torch.sign(d[0])
    Q[:, 1] *= torch.sign(d[1])
    Q[:, 2] *= torch.sign(d[2])
    L[0] *= torch.sign(d[0])
    L[1] *= torch.sign(d[1])
    L[2] *= torch.sign(d[2])
    return Q, L


def reference_fp32(ray, conf, H, W, seed):
    """The network's own post-processing, fp32, with our draws."""
    s, gh, gw, _ = ray.shape
    out = Dict()
    out.ray, out.ray_conf = ray[None].float().clone(), conf[None].float().clone()
    with Patched(seed, gh * gw) as p:
        out = DepthAnything3Net._process_ray_pose_estimation(None, out, H, W)
    return out.extrinsics[0], out.intrinsics[0], p


def reference_fp64(ray, conf, H, W, seed):
    """`camray_to_caminfo` in float64 with our draws (source grid as `unproject_depth`)."""
    s, gh, gw, _ = ray.shape
    ray, conf = ray.double(), conf.double().reshape(s, gh * gw).clone()
    dx, dy = 1 / gw, 1 / gh
    ys = torch.linspace(-(1 - dy) + 1, (1 - dy) + 1, gh, dtype=torch.float64) - 1.0
    xs = torch.linspace(-(1 - dx) + 1, (1 - dx) + 1, gw, dtype=torch.float64) - 1.0
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    src = torch.stack([xx, yy, torch.ones_like(xx)], -1).reshape(1, -1, 3).repeat(s, 1, 1)
    camray = ray.reshape(s, gh * gw, 6)
    saved_ql = ru.ql_decomposition
    ru.ql_decomposition = ql_any_dtype
    try:
        with Patched(seed, gh * gw) as p:
            R, f, pp = ru.compute_optimal_rotation_intrinsics_batch(
                src, camray[:, :, :3], reproj_threshold=0.2, weights=conf, n_sample=p.n_sample,
                n_iter=N_ITER, num_sample_for_ransac=N_POINTS, rand_sample_iters_idx=torch.tensor(p.table))
    finally:
        ru.ql_decomposition = saved_ql
    # camray_to_caminfo's centre (with the confidence zeroed in place for |z| <= 1e-4).
    T = torch.sum(camray[:, :, 3:] * conf.unsqueeze(-1), dim=1) / torch.sum(conf, dim=-1, keepdim=True)
    focal, pp = 1.0 / f, pp + 1.0
    c2w = torch.eye(4, dtype=torch.float64).repeat(s, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = R, T
    w2c = affine_inverse(c2w)[:, :3]
    K = torch.eye(3, dtype=torch.float64).repeat(s, 1, 1)
    K[:, 0, 0], K[:, 1, 1] = focal[:, 0] / 2 * W, focal[:, 1] / 2 * H
    K[:, 0, 2], K[:, 1, 2] = pp[:, 0] * W * 0.5, pp[:, 1] * H * 0.5
    return w2c, K, p


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def synthetic(gh, gw, H, W, seed=7):
    """Rays of known cameras: directions R·K⁻¹·pixel (scaled, noisy, 10 % outliers)."""
    g = np.random.default_rng(seed)
    cams = [(rotation([0.2, 1.0, -0.1], 0.4), np.array([0.5, -0.2, 1.0]), (0.9 * W, 1.1 * H)),
            (rotation([-0.7, 0.3, 0.6], -0.9), np.array([-1.5, 0.8, 0.3]), (0.6 * W, 0.7 * H))]
    rays, confs, w2cs, Ks = [], [], [], []
    ys, xs = np.meshgrid((np.arange(gh) + 0.5) / gh * H, (np.arange(gw) + 0.5) / gw * W, indexing="ij")
    for R, C, (fx, fy) in cams:
        K = np.array([[fx, 0, W / 2], [0, fy, H / 2], [0, 0, 1.0]])
        pix = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(-1, 3)
        d = (R @ np.linalg.inv(K) @ pix.T).T * g.uniform(0.5, 2.0, (pix.shape[0], 1))
        d += 1e-3 * g.standard_normal(d.shape)
        out = g.random(pix.shape[0]) < 0.1
        d[out] = g.standard_normal((out.sum(), 3))
        o = C + 1e-3 * g.standard_normal(d.shape)
        rays.append(np.concatenate([d, o], -1).reshape(gh, gw, 6))
        # Distinct confidences (a shuffled ramp): with ties, the order of equally confident
        # points, and so the refit draw, would depend on each side's sort.
        confs.append((1.0 + 2.0 * g.permutation(gh * gw) / (gh * gw)).reshape(gh, gw))
        w2cs.append(np.concatenate([R.T, -(R.T @ C)[:, None]], 1))
        Ks.append(K)
    t = lambda a: torch.tensor(np.stack(a))
    return t(rays).float(), t(confs).float(), t(w2cs), t(Ks)


def case(name, ray, conf, H, W, seed, out_dir, truth=None):
    e32, k32, p32 = reference_fp32(ray, conf, H, W, seed)
    e64, k64, p64 = reference_fp64(ray, conf, H, W, seed)
    assert p32.refit_counts == p64.refit_counts, (p32.refit_counts, p64.refit_counts)
    tensors = {
        "ray": ray.contiguous(), "ray_conf": conf.contiguous(),
        "image_hw": torch.tensor([H, W], dtype=torch.float64), "seed": torch.tensor([seed], dtype=torch.float64),
        "samples": torch.tensor(p64.table, dtype=torch.float64),
        "refit_counts": torch.tensor(p64.refit_counts, dtype=torch.float64),
        "refit_draw_sizes": torch.tensor(p64.draw_sizes + [-1], dtype=torch.float64),
        "ref32.extrinsics": e32.contiguous(), "ref32.intrinsics": k32.contiguous(),
        "ref64.extrinsics": e64.contiguous(), "ref64.intrinsics": k64.contiguous(),
        "ref64.homography": torch.stack(p64.refit_h).contiguous(),
    }
    if truth is not None:
        tensors["true.extrinsics"], tensors["true.intrinsics"] = (t.contiguous() for t in truth)
    save_file(tensors, os.path.join(out_dir, f"{name}.safetensors"))
    d = (e32.double() - e64).abs().max().item(), (k32.double() - k64).abs().max().item()
    print(f"{name}: refit points {p64.refit_counts}, draws {p64.draw_sizes}; fp32 vs fp64 reference max |d| "
          f"extrinsics {d[0]:.2e}, intrinsics {d[1]:.2e}")
    if truth is not None:
        print(f"  vs truth: extrinsics {(e64 - truth[0]).abs().max().item():.2e}, "
              f"intrinsics {(k64 - truth[1]).abs().max().item():.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gh, gw, H, W = 96, 112, 168, 196
    ray, conf, w2c, K = synthetic(gh, gw, H, W)
    case("ray_pose_synthetic", ray, conf, H, W, 42, args.out, truth=(w2c, K))
    g = load_file(os.path.join(args.out, "tiny_s3_posed.golden.safetensors"))
    ray, conf = g["golden.ray"][0], g["golden.ray_conf"][0]
    H, W = g["golden.depth"].shape[-2:]
    case("ray_pose_tiny", ray, conf, H, W, 5, args.out)


if __name__ == "__main__":
    main()
