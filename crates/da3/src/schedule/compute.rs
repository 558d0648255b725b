//! How much arithmetic a pass of S views costs per view, and the largest chunk whose global
//! attention does not dominate it.
//!
//! Everything in a pass is linear in the views except the global attention blocks, whose
//! every query attends to all S·N tokens: per view they cost 4·S·N²·D multiply-adds ×2 per
//! global block, growing with S. When a job has to run in chunks anyway (it does not fit one
//! pass), a memory budget alone would pick the largest chunk that fits: dozens of views of
//! da3-small at 280×280 in 4 GiB, hundreds in a large GPU's memory, where the global attention
//! costs more than the rest of the pass and grows without bound. The scheduler caps such chunks at
//! [`ComputeModel::balanced_views`]: the largest S whose global attention costs at most as much
//! as the rest of the pass, so that a view costs at most twice what it costs alone.

use crate::config::{Da3Config, FfnKind, HeadKind, PATCH_SIZE};

/// Fewest views per chunk the compute cap picks (where memory allows more): below 8 the
/// chunks' multi-view context and the overlap's share of the work (≥ 2 shared views) both get
/// worse quickly.
pub const MIN_BALANCED_VIEWS: usize = 8;

/// The arithmetic of one model at one resolution, in floating-point operations per view.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeModel {
    /// Tokens per view N.
    tokens: u64,
    /// Token width D.
    dim: u64,
    /// Matrix-product FLOPs of one block per token (qkv, projection, FFN).
    block_linear_per_token: u64,
    /// Blocks that attend within a view, and across all views.
    local_blocks: u64,
    global_blocks: u64,
    /// Estimated FLOPs of the dense head(s) per view.
    head: u64,
}

impl ComputeModel {
    /// The model of `config` at `height`×`width` pixels.
    pub fn new(config: &Da3Config, height: usize, width: usize) -> Self {
        let b = &config.backbone;
        let grid = ((height / PATCH_SIZE) * (width / PATCH_SIZE)) as u64;
        let (d, hidden) = (b.embed_dim as u64, b.ffn_hidden() as u64);
        let ffn = match b.ffn {
            FfnKind::Mlp => 2 * d * hidden,    // fc1, fc2
            FfnKind::SwiGlu => 3 * d * hidden, // w12 (2·hidden wide), w3
        };
        let global_blocks = (0..b.depth).filter(|&i| b.is_global(i)).count() as u64;
        // The head's cost is dominated by the fusion blocks' 3×3 F→F convolutions: 4 per
        // level at ½, 1, 2 and 4 times the patch grid's side (Σ scale² = 21.25 grids), 2·9·F²
        // FLOPs per pixel each; DualDPT runs a second (aux) fusion path. That path runs only
        // with `use_ray_pose` now (`Outputs::rays`); it is still counted: this model only
        // balances pass sizes, and the head is a minor term of the per-view cost.
        let f = config.head.features as u64;
        let fusion = 4 * 2 * 9 * f * f * grid * 85 / 4;
        let head = fusion * if config.head.kind == HeadKind::DualDpt { 2 } else { 1 };
        let branches = 1 + u64::from(config.metric_branch.is_some());
        Self {
            tokens: grid + 2,
            dim: d,
            block_linear_per_token: 2 * (4 * d * d + ffn),
            local_blocks: b.depth as u64 - global_blocks,
            global_blocks,
            head: head * branches,
        }
    }

    /// FLOPs per view of everything that does not grow with the views in a pass: the
    /// blocks' matrix products, the local attention and the head.
    pub fn fixed_per_view(&self) -> u64 {
        let n = self.tokens;
        (self.local_blocks + self.global_blocks) * n * self.block_linear_per_token
            + self.local_blocks * 4 * n * n * self.dim
            + self.head
    }

    /// FLOPs per view of the global attention in a pass of `views` views.
    pub fn global_attention_per_view(&self, views: usize) -> u64 {
        self.global_blocks * 4 * views as u64 * self.tokens * self.tokens * self.dim
    }

    /// FLOPs per view in a pass of `views` views.
    pub fn per_view(&self, views: usize) -> u64 {
        self.fixed_per_view() + self.global_attention_per_view(views)
    }

    /// The largest pass whose global attention costs at most as much as the rest of it (per
    /// view ≤ 2× a single view's cost), at least 1; `usize::MAX` without global attention.
    pub fn balanced_views(&self) -> usize {
        let per_extra_view = self.global_attention_per_view(1);
        if per_extra_view == 0 {
            return usize::MAX;
        }
        ((self.fixed_per_view() / per_extra_view) as usize).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts against hand-computed FLOPs for da3-small (D = 384, 12 blocks of which 4
    /// global, MLP 1536, F = 64) at 280×280 (N = 402).
    #[test]
    fn small_at_280_by_hand() {
        let config = Da3Config::preset("da3-small").unwrap();
        let m = ComputeModel::new(&config, 280, 280);
        let (n, d) = (402u64, 384u64);
        let linear = 12 * n * 2 * (4 * d * d + 2 * d * 1536);
        let local = 8 * 4 * n * n * d;
        let head = 2 * (4 * 2 * 9 * 64 * 64 * 400 * 85 / 4);
        assert_eq!(m.fixed_per_view(), linear + local + head);
        assert_eq!(m.global_attention_per_view(3), 4 * 4 * 3 * n * n * d);
        // 24.1 GFLOP fixed, 0.99 GFLOP of global attention per view in the pass: 24 views.
        assert_eq!(m.balanced_views(), 24);
        assert!(m.global_attention_per_view(24) <= m.fixed_per_view());
        assert!(m.global_attention_per_view(25) > m.fixed_per_view());
        assert_eq!(m.per_view(24), m.fixed_per_view() + 24 * 16 * n * n * d);
    }

    /// More tokens per view (a larger image) leave room for fewer views; a wider model for
    /// more (its matrix products grow with D², the attention with D).
    #[test]
    fn balance_moves_with_resolution_and_width() {
        let small = Da3Config::preset("da3-small").unwrap();
        let large = Da3Config::preset("da3-large").unwrap();
        let at = |c: &Da3Config, h, w| ComputeModel::new(c, h, w).balanced_views();
        assert!(at(&small, 378, 504) < at(&small, 280, 280));
        assert!(at(&large, 280, 280) > at(&small, 280, 280));
        // Mono models have no global attention: no cap.
        let mono = Da3Config::preset("da3mono-large").unwrap();
        assert_eq!(at(&mono, 280, 280), usize::MAX);
    }
}
