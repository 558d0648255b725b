//! `y = x W + b` (every `nn.Linear` of the model) on Burn's flex backend, as one parallel loop
//! of serial GEMMs ([`parallel_gemm`], which also runs the 1×1 convolutions, see `conv`).
//!
//! burn-flex's `linear` runs three steps, two of them on the calling thread while the thread
//! pool waits: it zero-fills the output (a memset of up to 18 MB per backbone layer), runs the
//! product (gemm, parallel), then adds the bias in a separate broadcast pass. In a perf profile
//! of a da3-small pass those serial steps were 20 % of the main thread's time. Here the output
//! is cut into a few tiles per thread ([`plan_tiles`]); each tile copies the bias into its part
//! of the uninitialized output and accumulates one single-threaded gemm call onto it, so
//! nothing runs serially and the output is written once.

use burn::tensor::{backend::Backend, DType, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::flex::{from_flex, gemm_serial, into_flex, values, SharedOut, Strided};

/// Tiles per thread: more than one, so that a thread slowed down by another process does
/// not hold back the whole product.
const BLOCKS_PER_THREAD: usize = 3;
/// Smallest tile height in rows (below it, packing overheads dominate a gemm call).
const MIN_ROWS: usize = 48;
/// Smallest tile width in columns.
const MIN_COLS: usize = 64;
/// Tile heights and widths are rounded up to a multiple of this: along the columns it is the
/// `gemm` microkernel's register-tile height on AVX2 (gemm transposes a row-major product, so
/// its tile rows run along our columns), so inner column tiles have no ragged microkernel edge.
const TILE_STEP: usize = 16;
/// Products smaller than this many multiply-adds run as one serial call.
const SERIAL_BELOW: usize = 1 << 18;

/// The bias of a [`parallel_gemm`]: none, one value per output column (a linear layer's) or
/// one per output row (a 1×1 convolution's, whose rows are output channels).
#[derive(Clone, Copy)]
pub(crate) enum Bias<'a> {
    /// No bias.
    None,
    /// `out[i, j] += bias[j]`.
    PerColumn(&'a [f32]),
    /// `out[i, j] += bias[i]`.
    PerRow(&'a [f32]),
}

/// `lhs[m×k] · rhs[k×n] + bias` in parallel, written to `out[..m·n]` (contiguous rows),
/// which is appended to `out` (its spare capacity is written, never zero-filled first).
///
/// # Safety
/// `lhs` and `rhs` must address m×k and k×n valid elements through their strides, and a
/// bias slice must have n (per column) or m (per row) elements.
pub(crate) unsafe fn parallel_gemm(out: &mut Vec<f32>, m: usize, k: usize, n: usize, lhs: Strided, rhs: Strided, bias: Bias) {
    let len = out.len();
    out.reserve(m * n);
    if m * n == 0 {
        return;
    }
    let (row_block, col_block) = plan_tiles(m, k, n, rayon::current_num_threads());
    let tiles: Vec<(usize, usize)> =
        (0..m).step_by(row_block).flat_map(|r| (0..n).step_by(col_block).map(move |c| (r, c))).collect();
    let dst = SharedOut::spare(out);
    let run = |&(r0, c0): &(usize, usize)| {
        let (lhs, rhs): (Strided, Strided) = (lhs, rhs); // captured whole (`Sync`), not by field
        let (rows, cols) = (row_block.min(m - r0), col_block.min(n - c0));
        // SAFETY: each tile writes only rows r0..r0+rows, columns c0..c0+cols of the m·n
        // spare elements of `out` (every element by exactly one tile: the tiles cover the
        // matrix); the operands are read within lhs[r0.., ..k] and rhs[..k, c0..]. Without a
        // bias, gemm with `accumulate = false` writes its destination without reading it.
        unsafe {
            let base = dst.get().add(r0 * n + c0);
            for r in 0..rows {
                let row = base.add(r * n);
                match bias {
                    Bias::None => {}
                    Bias::PerColumn(b) => std::ptr::copy_nonoverlapping(b.as_ptr().add(c0), row, cols),
                    Bias::PerRow(b) => std::slice::from_raw_parts_mut(row.cast::<std::mem::MaybeUninit<f32>>(), cols)
                        .fill(std::mem::MaybeUninit::new(b[r0 + r])),
                }
            }
            let zero_k = k == 0 && matches!(bias, Bias::None);
            if zero_k {
                for r in 0..rows {
                    std::ptr::write_bytes(base.add(r * n), 0, cols);
                }
            } else if k > 0 {
                let lhs = Strided { ptr: lhs.ptr.offset(r0 as isize * lhs.row), ..lhs };
                let rhs = Strided { ptr: rhs.ptr.offset(c0 as isize * rhs.col), ..rhs };
                gemm_serial(rows, cols, k, base, n as isize, !matches!(bias, Bias::None), lhs, rhs, 1.0);
            }
        }
    };
    if tiles.len() == 1 {
        run(&tiles[0]);
    } else {
        tiles.par_iter().for_each(run);
    }
    // SAFETY: the tiles wrote all m·n elements after the first `len`.
    unsafe { out.set_len(len + m * n) };
}

/// The tile height and width of a [`parallel_gemm`] of `m×k · k×n` on `threads` threads.
///
/// Each tile is its own gemm call. `gemm` 0.19 transposes a row-major product and packs what
/// is then its left operand, our right one (a linear layer's weight), in every call that reads
/// it: a grid of `r × c` tiles packs k·n values `r` times (6 row blocks, the split used
/// before, packed every weight 6 times per layer; `pack_lhs` was 6.3 % of a da3-small pass in
/// `tools/bench/profile.sh`). Each of the `c` column tiles re-reads the whole left operand
/// (m·k). So among the grids with the most tiles up to [`BLOCKS_PER_THREAD`] per thread
/// (tiles no smaller than [`MIN_ROWS`] × [`MIN_COLS`]), the one with the least `r·n + c·m` is
/// taken: 2 × 3 for the backbone's qkv and fc1 on 2 threads, 3 × 2 for fc2, columns only for
/// a wide 1×1 convolution. Measured end to end (`tools/bench/ab.sh`, da3-small, 1 view, 2
/// threads, 8 rounds alternated with the binary before): median pass 0.941×, min 0.948×. One
/// thread, or a product too small to share, is one call.
pub(crate) fn plan_tiles(m: usize, k: usize, n: usize, threads: usize) -> (usize, usize) {
    let tasks = threads.max(1) * BLOCKS_PER_THREAD;
    if threads <= 1 || m * n * k < SERIAL_BELOW {
        return (m.max(1), n.max(1));
    }
    let (max_rows, max_cols) = ((m / MIN_ROWS).max(1), (n / MIN_COLS).max(1));
    let mut best = (1, 1);
    let key = |(r, c): (usize, usize)| (std::cmp::Reverse(r * c), r * n + c * m);
    for r in 1..=max_rows.min(tasks) {
        let c = (tasks / r).min(max_cols);
        if key((r, c)) < key(best) {
            best = (r, c);
        }
    }
    let (r, c) = best;
    let round = |len: usize, parts: usize| if parts == 1 { len } else { len.div_ceil(parts).next_multiple_of(TILE_STEP).min(len) };
    (round(m, r), round(n, c))
}

/// `a[m×k] · w[k×n] (+ bias[n])`, all row-major and contiguous, in parallel: [m, n].
pub(crate) fn matmul_bias(a: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(a.len() == m * k && w.len() == k * n && bias.is_none_or(|b| b.len() == n), "matmul_bias: operand sizes");
    let mut out = Vec::new();
    let lhs = Strided { ptr: a.as_ptr(), row: k as isize, col: 1 };
    let rhs = Strided { ptr: w.as_ptr(), row: n as isize, col: 1 };
    // SAFETY: the sizes were checked above.
    unsafe { parallel_gemm(&mut out, m, k, n, lhs, rhs, bias.map_or(Bias::None, Bias::PerColumn)) };
    out
}

/// `x [..., in] · weight [in, out] + bias [out]` when `B` is flex, all three are f32 and the
/// weight and bias are contiguous (as [`crate::nn::Linear`] loads them); `None` otherwise.
pub(crate) fn try_linear<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, D>> {
    let weight = into_flex(weight.clone()).ok()?;
    let bias = match bias {
        Some(b) => Some(into_flex(b.clone()).ok()?),
        None => None,
    };
    let [k, n] = [weight.layout().shape()[0], weight.layout().shape()[1]];
    let mut shape = x.dims();
    if shape[D - 1] != k || bias.as_ref().is_some_and(|b| b.layout().shape().num_elements() != n) {
        return None;
    }
    let w = values(&weight)?;
    let b = match &bias {
        Some(b) => Some(values(b)?),
        None => None,
    };
    let x = into_flex(x.clone()).ok()?;
    if x.dtype() != DType::F32 {
        return None;
    }
    let contiguous;
    let a = match values(&x) {
        Some(v) => v,
        None => {
            contiguous = x.to_contiguous();
            values(&contiguous)?
        }
    };
    let m: usize = shape[..D - 1].iter().product();
    let out = matmul_bias(a, w, b, m, k, n);
    shape[D - 1] = n;
    Some(from_flex(FlexTensor::from_data(TensorData::new(out, shape))))
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use crate::kernels::test_support::{pattern, rel_l2};
    use burn::tensor::module::linear;
    use burn::tensor::Tensor;

    fn tensor<const D: usize>(shape: [usize; D], seed: usize) -> Tensor<Flex, D> {
        pattern(shape, seed, 2.0, 0.0)
    }

    /// Ours against Burn's `linear` on flex: row-split, column-split and serial shapes, with
    /// and without bias, a strided input and a rank-4 input.
    #[test]
    fn matches_burn_linear() {
        let cases: [([usize; 3], usize, bool, bool); 6] = [
            ([1, 974, 384], 1152, true, false), // backbone qkv: rows split
            ([2, 300, 64], 256, false, false),  // rows split, no bias
            ([1, 3, 384], 1536, true, false),   // few rows: columns split
            ([1, 5, 7], 3, true, false),        // tiny: one serial call
            ([1, 200, 96], 130, true, true),    // strided input, odd widths
            ([3, 1, 1000], 1000, false, false), // columns split, no bias
        ];
        for (shape, n, with_bias, strided) in cases {
            let x = if strided {
                let [a, b, c] = shape;
                tensor([a, c, b], 1).swap_dims(1, 2)
            } else {
                tensor(shape, 1)
            };
            let w = tensor([shape[2], n], 2);
            let b = with_bias.then(|| tensor([n], 3));
            let ours = super::try_linear(&x, &w, b.as_ref()).expect("kernel applies");
            let burn = linear(x, w, b);
            assert_eq!(ours.dims(), burn.dims());
            let err = rel_l2(&ours.into_data().to_vec::<f32>().unwrap(), &burn.into_data().to_vec::<f32>().unwrap());
            assert!(err < 1e-6, "{shape:?}·[{}, {n}]: rel L2 {err:.2e}", shape[2]);
        }
        // Rank 4 ([B, S, N, C], as the camera encoder's tokens).
        let x = tensor([2, 3, 17, 32], 4);
        let w = tensor([32, 48], 5);
        let b = tensor([48], 6);
        let ours = super::try_linear(&x, &w, Some(&b)).expect("kernel applies");
        let burn = linear(x, w, Some(b));
        assert_eq!(ours.dims(), [2, 3, 17, 48]);
        let err = rel_l2(&ours.into_data().to_vec::<f32>().unwrap(), &burn.into_data().to_vec::<f32>().unwrap());
        assert!(err < 1e-6, "rank 4: rel L2 {err:.2e}");
    }

    /// The tile grids: the backbone's products split 2 × 3 on 2 threads, a wide 1×1
    /// convolution only by columns, small or single-threaded products not at all; every tile
    /// lies within the product.
    #[test]
    fn tile_plans() {
        let grid = |m: usize, k: usize, n: usize, threads: usize| {
            let (rb, cb) = super::plan_tiles(m, k, n, threads);
            assert!(rb >= 1 && rb <= m && cb >= 1 && cb <= n, "{m}x{n}: tile {rb}x{cb}");
            (m.div_ceil(rb), n.div_ceil(cb))
        };
        assert_eq!(grid(974, 384, 1152, 2), (2, 3)); // qkv
        assert_eq!(grid(974, 1536, 384, 2), (3, 2)); // fc2: fewer columns than rows
        assert_eq!(grid(64, 64, 62208, 2), (1, 6)); // 1×1 conv at 216×288
        assert_eq!(grid(974, 384, 1152, 1), (1, 1));
        assert_eq!(grid(5, 7, 3, 2), (1, 1)); // below SERIAL_BELOW
        assert_eq!(grid(3, 384, 1536, 2), (1, 6)); // few rows: columns only
        assert_eq!(grid(974, 384, 1152, 16), (6, 8));
        let (rows, cols) = grid(100, 512, 70, 2); // too narrow for column tiles
        assert_eq!((rows, cols), (2, 1));
    }

    /// Shapes or layouts the kernel does not take are declined (Burn's op runs them).
    #[test]
    fn declines_mismatches() {
        let x = tensor([1, 4, 6], 1);
        assert!(super::try_linear(&x, &tensor([5, 3], 2), None).is_none()); // in ≠ 6
        assert!(super::try_linear(&x, &tensor([6, 3], 2), Some(&tensor([4], 3))).is_none()); // bias
        let transposed = tensor([3, 6], 2).transpose(); // [6, 3], not contiguous
        assert!(super::try_linear(&x, &transposed, None).is_none());
    }
}
