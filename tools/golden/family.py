#!/usr/bin/env python3
"""Golden fixtures for the nested model and the exported backbone features.

Rebuilds the tiny networks of generate.py from the same seeds (and checks that their weights
equal the committed fixture files), then writes:

  nested_s2.golden.safetensors  NestedDepthAnything3Net(da3=tiny, da3_metric=tiny-mono): the
                                reference forward's depth, depth_conf, extrinsics, intrinsics,
                                scale_factor, plus the metric branch's raw depth and sky
  feat_s3.golden.safetensors    tiny, 3 views, strategy `middle` (reference view 1): the
                                reference's `aux` features of layers FEAT_LAYERS, put back in
                                input view order (the reference leaves layers >= alt_start-1 in
                                the reordered order; da3 returns input order, see
                                crates/da3/src/backbone/mod.rs)

The nested weights are not committed: the Rust test builds them from tiny.weights.safetensors
and tiny-mono.weights.safetensors with the prefixes `model.da3.` / `model.da3_metric.`, which
is exactly what save_model writes for the nested module (checked below).

Usage: python3 tools/golden/family.py --out crates/da3/tests/fixtures
"""

import argparse
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate as g  # noqa: E402

from depth_anything_3.model.da3 import NestedDepthAnything3Net  # noqa: E402
from depth_anything_3.model.reference_view_selector import restore_original_order  # noqa: E402

FEAT_LAYERS = [0, 2, 3, 5, 7]


def tiny_net(name, fixtures):
    """The tiny network `name`, with the weights generate.py gave it (and committed)."""
    index = list(g.TINY).index(name)
    net = g.build_tiny(g.TINY[name]).eval()
    g.randomize(net, g.WEIGHT_SEED + index)
    committed = load_file(os.path.join(fixtures, f"{name}.weights.safetensors"))
    ours = {f"model.{k}": v for k, v in net.state_dict().items()}
    for key, value in committed.items():
        assert torch.equal(ours[key], value), f"{name}: {key} differs from the committed fixture"
    return net


@torch.no_grad()
def nested_case(anyview, metric, out_dir):
    nested = NestedDepthAnything3Net.__new__(NestedDepthAnything3Net)
    nn.Module.__init__(nested)
    nested.da3, nested.da3_metric = anyview, metric
    keys = set(g.Hub(nested).state_dict())
    assert any(k.startswith("model.da3.") for k in keys) and any(k.startswith("model.da3_metric.") for k in keys)
    x = g.images_for(2, 42, 56, 21)
    metric_raw = metric(x)  # includes the metric model's own sky fill, as in the nested forward
    out = nested(x, ref_view_strategy="saddle_balanced")
    non_sky = (metric_raw.sky < 0.3).sum().item()
    assert 10 < non_sky < metric_raw.sky.numel() - 10, f"nested case must have sky and non-sky ({non_sky})"
    golden = {
        "golden.images": x,
        "golden.depth": out.depth,
        "golden.depth_conf": out.depth_conf,
        "golden.extrinsics": out.extrinsics,
        "golden.intrinsics": out.intrinsics,
        "golden.scale_factor": torch.tensor([out.scale_factor]),
        "golden.metric_depth": metric_raw.depth,
        "golden.metric_sky": metric_raw.sky,
    }
    save_file({k: v.contiguous().float() for k, v in golden.items()},
              os.path.join(out_dir, "nested_s2.golden.safetensors"),
              metadata={"config": "tiny+tiny-mono", "strategy": "saddle_balanced"})
    print(f"wrote nested_s2 (scale factor {out.scale_factor:.6f}, {non_sky} non-sky pixels)")


@torch.no_grad()
def feat_case(net, out_dir):
    x = g.images_for(3, 42, 56, 22)
    selected = {}
    original = g.vt.select_reference_view

    def select(xx, strategy="saddle_balanced"):
        selected["idx"] = original(xx, strategy=strategy)
        return selected["idx"]

    g.vt.select_reference_view = select
    try:
        out = net(x, export_feat_layers=FEAT_LAYERS, ref_view_strategy="middle")
    finally:
        g.vt.select_reference_view = original
    alt = net.backbone.pretrained.alt_start
    golden = {"golden.images": x, "golden.depth": out.depth}
    for layer in FEAT_LAYERS:
        feat = out.aux[f"feat_layer_{layer}"]  # [1, S, h, w, D]
        if layer >= alt - 1:  # appended after the reordering before block alt_start-1
            feat = restore_original_order(feat, selected["idx"])
        golden[f"golden.feat_layer.{layer}"] = feat
    save_file({k: v.contiguous().float() for k, v in golden.items()},
              os.path.join(out_dir, "feat_s3.golden.safetensors"),
              metadata={"config": "tiny", "strategy": "middle", "layers": ",".join(map(str, FEAT_LAYERS))})
    print(f"wrote feat_s3 (reference view {int(selected['idx'].item())})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the fixtures directory (holds the tiny weights)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiny = tiny_net("tiny", args.out)
    nested_case(tiny, tiny_net("tiny-mono", args.out), args.out)
    feat_case(tiny, args.out)


if __name__ == "__main__":
    sys.exit(main())
