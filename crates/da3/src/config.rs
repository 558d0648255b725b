//! Model configuration: presets of the DA3 main series and arbitrary (e.g. tiny test) sizes.

use serde::{Deserialize, Serialize};

use crate::Da3Error;

/// Feed-forward network of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    /// `fc1 -> GELU(erf) -> fc2` (vits, vitb, vitl).
    Mlp,
    /// `w12 -> silu(x1) * x2 -> w3` (vitg).
    SwiGlu,
}

/// The DINOv2 backbone with DA3's alternating local/global attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneConfig {
    /// Token width D.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// FFN hidden width = `embed_dim * mlp_ratio` (before the SwiGLU 2/3 rule).
    pub mlp_ratio: usize,
    /// FFN kind.
    pub ffn: FfnKind,
    /// Blocks whose outputs feed the head, in order.
    pub out_layers: [usize; 4],
    /// First block of alternating attention and of the camera token; `None` = plain DINOv2.
    pub alt_start: Option<usize>,
    /// First block with QK-norm.
    pub qknorm_start: Option<usize>,
    /// First block with 2D RoPE.
    pub rope_start: Option<usize>,
    /// Whether head features are `[local ‖ global]` (2D wide) or just the block output.
    pub cat_token: bool,
    /// Side of the learned positional-embedding grid (518 / 14 = 37).
    #[serde(default = "default_pos_grid")]
    pub pos_grid: usize,
}

fn default_pos_grid() -> usize {
    37
}

impl BackboneConfig {
    /// Hidden width of the FFN, following the reference (`SwiGLUFFNFused` shrinks it by 2/3).
    pub fn ffn_hidden(&self) -> usize {
        let hidden = self.embed_dim * self.mlp_ratio;
        match self.ffn {
            FfnKind::Mlp => hidden,
            FfnKind::SwiGlu => (hidden * 2 / 3).div_ceil(8) * 8,
        }
    }

    /// Width of the features the backbone hands to the head.
    pub fn out_dim(&self) -> usize {
        if self.cat_token { 2 * self.embed_dim } else { self.embed_dim }
    }

    /// Whether block `i` attends across all views (`i >= alt_start && i` odd).
    pub fn is_global(&self, i: usize) -> bool {
        self.alt_start.is_some_and(|a| i >= a && i % 2 == 1)
    }
}

/// Which dense head a model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// DualDPT: depth + confidence and rays (main series, with the camera modules).
    #[default]
    DualDpt,
    /// DPT: depth and sky (mono and metric models).
    Dpt,
}

/// A DPT-style head: the reassembly widths shared by DualDPT and DPT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// The kind of head.
    #[serde(default)]
    pub kind: HeadKind,
    /// Input feature width (2D with `cat_token`).
    pub dim_in: usize,
    /// Fusion width F.
    pub features: usize,
    /// Channels of the four projections.
    pub out_channels: [usize; 4],
}

/// A whole DA3 network: backbone and head, plus the camera modules for the main series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Da3Config {
    /// Name used in messages (a preset name or a user label).
    pub name: String,
    /// Backbone.
    pub backbone: BackboneConfig,
    /// Dense head.
    pub head: HeadConfig,
    /// Whether depth is metric up to the focal length: metres = depth · focal_px / 300
    /// (da3metric-large).
    #[serde(default)]
    pub metric: bool,
    /// The nested model's second network (`da3nested-giant-large`): a metric model whose depth
    /// gives this (any-view) network's output metric scale. `None` for single networks. The
    /// any-view branch's weights are then under `model.da3.`, this one's under `model.da3_metric.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_branch: Option<Box<Da3Config>>,
    /// Whether the model has the 3D-Gaussian head (`gs_head`, GSDPT with the same widths as
    /// `head`) and its adapter: da3-giant and the any-view branch of the nested model.
    #[serde(default)]
    pub gs_head: bool,
}

/// Pixels per patch side; fixed by the checkpoints.
pub const PATCH_SIZE: usize = 14;

/// Names of the built-in presets.
pub const PRESETS: [&str; 7] = [
    "da3-small",
    "da3-base",
    "da3-large",
    "da3-giant",
    "da3mono-large",
    "da3metric-large",
    "da3nested-giant-large",
];

impl Da3Config {
    /// The preset of that name (one of [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Self, Da3Error> {
        if name == "da3nested-giant-large" {
            let mut nested = Self::preset("da3-giant")?;
            nested.name = name.to_string();
            nested.metric_branch = Some(Box::new(Self::mono_large("da3metric-large", true)));
            return Ok(nested);
        }
        if let Some(kind) = name.strip_prefix("da3").and_then(|n| n.strip_suffix("-large")) {
            if kind == "mono" || kind == "metric" {
                return Ok(Self::mono_large(name, kind == "metric"));
            }
        }
        let (d, depth, heads, ffn, out_layers, alt, f, oc) = match name {
            "da3-small" => (384, 12, 6, FfnKind::Mlp, [5, 7, 9, 11], 4, 64, [48, 96, 192, 384]),
            "da3-base" => (768, 12, 12, FfnKind::Mlp, [5, 7, 9, 11], 4, 128, [96, 192, 384, 768]),
            "da3-large" => (1024, 24, 16, FfnKind::Mlp, [11, 15, 19, 23], 8, 256, [256, 512, 1024, 1024]),
            "da3-giant" => (1536, 40, 24, FfnKind::SwiGlu, [19, 27, 33, 39], 13, 256, [256, 512, 1024, 1024]),
            other => {
                return Err(Da3Error::Config(format!(
                    "unknown model `{other}`; known presets: {}",
                    PRESETS.join(", ")
                )))
            }
        };
        Ok(Self {
            name: name.to_string(),
            backbone: BackboneConfig {
                embed_dim: d,
                depth,
                num_heads: heads,
                mlp_ratio: 4,
                ffn,
                out_layers,
                alt_start: Some(alt),
                qknorm_start: Some(alt),
                rope_start: Some(alt),
                cat_token: true,
                pos_grid: 37,
            },
            head: HeadConfig { kind: HeadKind::DualDpt, dim_in: 2 * d, features: f, out_channels: oc },
            metric: false,
            metric_branch: None,
            // Only the giant checkpoint ships `model.gs_head.*` (configs/da3-giant.yaml).
            gs_head: name == "da3-giant",
        })
    }

    /// `da3mono-large` / `da3metric-large`: a plain DINOv2 vitl (no alternation, RoPE or cat
    /// token, fully normed out layers [4, 11, 17, 23]) with the DPT head and its sky branch.
    fn mono_large(name: &str, metric: bool) -> Self {
        Self {
            name: name.to_string(),
            backbone: BackboneConfig {
                embed_dim: 1024,
                depth: 24,
                num_heads: 16,
                mlp_ratio: 4,
                ffn: FfnKind::Mlp,
                out_layers: [4, 11, 17, 23],
                alt_start: None,
                qknorm_start: None,
                rope_start: None,
                cat_token: false,
                pos_grid: 37,
            },
            head: HeadConfig { kind: HeadKind::Dpt, dim_in: 1024, features: 256, out_channels: [256, 512, 1024, 1024] },
            metric,
            metric_branch: None,
            gs_head: false,
        }
    }

    /// Reads a `config.json`: the Hub form `{"model_name": "da3-large"}` or a full config.
    pub fn from_json(text: &str) -> Result<Self, Da3Error> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Da3Error::Config(format!("invalid JSON: {e}")))?;
        if let Some(name) = value.get("model_name").and_then(|v| v.as_str()) {
            return Self::preset(name);
        }
        let cfg: Self = serde_json::from_value(value)
            .map_err(|e| Da3Error::Config(format!("not a DA3 config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the invariants the network relies on.
    pub fn validate(&self) -> Result<(), Da3Error> {
        let b = &self.backbone;
        let err = |m: String| Err(Da3Error::Config(format!("{}: {m}", self.name)));
        if b.num_heads == 0 || b.embed_dim % b.num_heads != 0 {
            return err(format!("embed_dim {} is not divisible by num_heads {}", b.embed_dim, b.num_heads));
        }
        if b.rope_start.is_some() && (b.embed_dim / b.num_heads) % 4 != 0 {
            return err("2D RoPE needs a head dim divisible by 4".into());
        }
        if let Some(&l) = b.out_layers.iter().find(|&&l| l >= b.depth) {
            return err(format!("out layer {l} >= depth {}", b.depth));
        }
        if self.head.dim_in != b.out_dim() {
            return err(format!("head dim_in {} != backbone output width {}", self.head.dim_in, b.out_dim()));
        }
        if self.head.features % 4 != 0 {
            return err("head features must be divisible by 4 (UV embedding)".into());
        }
        if self.head.kind == HeadKind::DualDpt && b.alt_start.is_none() {
            return err("a DualDPT model needs alternating attention (alt_start) for its camera token".into());
        }
        if let Some(branch) = &self.metric_branch {
            if self.head.kind != HeadKind::DualDpt {
                return err("a nested model's any-view branch must be a main-series (DualDPT) network".into());
            }
            if branch.head.kind != HeadKind::Dpt || branch.metric_branch.is_some() {
                return err(format!("nested metric branch `{}` must be a single DPT (metric) network", branch.name));
            }
            branch.validate()?;
        }
        if self.gs_head && self.head.kind != HeadKind::DualDpt {
            return err("the 3D-Gaussian head needs a DualDPT model (it places Gaussians with the predicted cameras)".into());
        }
        if self.gs_head && self.head.features % 8 != 0 {
            return err("the 3D-Gaussian head needs features divisible by 8 (its image merger is F/8 -> F/4 -> F/2)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn giant_swiglu_hidden_matches_reference() {
        // (int(6144 * 2 / 3) + 7) // 8 * 8 = 4096 in the reference.
        assert_eq!(Da3Config::preset("da3-giant").unwrap().backbone.ffn_hidden(), 4096);
    }

    #[test]
    fn global_blocks_follow_the_alternation_rule() {
        let small = Da3Config::preset("da3-small").unwrap().backbone;
        let global: Vec<usize> = (0..small.depth).filter(|&i| small.is_global(i)).collect();
        assert_eq!(global, vec![5, 7, 9, 11]);
        let giant = Da3Config::preset("da3-giant").unwrap().backbone;
        assert!(giant.is_global(13) && !giant.is_global(14) && !giant.is_global(11));
    }

    #[test]
    fn hub_config_json_selects_preset() {
        let cfg = Da3Config::from_json(r#"{"model_name": "da3-base"}"#).unwrap();
        assert_eq!(cfg.backbone.embed_dim, 768);
        assert!(Da3Config::from_json(r#"{"model_name": "da3-huge"}"#).is_err());
    }

    #[test]
    fn only_giant_and_nested_have_the_gs_head() {
        // The nested model's any-view branch is da3-giant (`model.da3.gs_head.*`).
        for p in PRESETS {
            assert_eq!(Da3Config::preset(p).unwrap().gs_head, p == "da3-giant" || p == "da3nested-giant-large", "{p}");
        }
    }

    #[test]
    fn presets_validate() {
        for p in PRESETS {
            Da3Config::preset(p).unwrap().validate().unwrap();
        }
    }
}
