//! One-off measurements (ignored; not timed tests) of where the DualDPT head of da3-small at
//! 504×378 spends its time on flex: the 3×3 convolutions and the bilinear resizes at the
//! head's real sizes, against alternative formulations.
//! `cargo test ... --test head_profile -- --ignored --nocapture`

#![cfg(feature = "flex")]

use burn::tensor::{Distribution, Tensor};
use da3::backends::Flex;
use da3::head::upsample::resize_bilinear_aligned;
use da3::nn::{Conv2d, ConvSpec};

/// Min and median wall time in ms of `f` over `n` runs (after one warm-up run).
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let _ = f();
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            let _ = f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[0], v[n / 2])
}

/// Separable align-corners bilinear resize from generic ops (gather rows, blend, gather
/// columns, blend): the candidate replacement for the backend's per-pixel kernel.
fn bilinear_separable(x: Tensor<Flex, 4>, size: [usize; 2]) -> Tensor<Flex, 4> {
    let device = Default::default();
    let axis = |n_in: usize, n_out: usize| {
        let scale = if n_out > 1 { (n_in - 1) as f64 / (n_out - 1) as f64 } else { 0.0 };
        let mut lo = Vec::with_capacity(n_out);
        let mut hi = Vec::with_capacity(n_out);
        let mut t = Vec::with_capacity(n_out);
        for i in 0..n_out {
            let src = i as f64 * scale;
            let l = (src.floor() as usize).min(n_in - 1);
            lo.push(l as i64);
            hi.push((l + 1).min(n_in - 1) as i64);
            t.push((src - l as f64) as f32);
        }
        let idx = |v: Vec<i64>| Tensor::<Flex, 1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(v, [n_out]), &device);
        (idx(lo), idx(hi), t)
    };
    let [_, _, h, w] = x.dims();
    let (lo, hi, t) = axis(h, size[0]);
    let t = Tensor::<Flex, 1>::from_data(burn::tensor::TensorData::new(t, [size[0]]), &device).reshape([1, 1, size[0], 1]);
    let a = x.clone().select(2, lo);
    let y = a.clone() + (x.select(2, hi) - a) * t; // [N, C, oh, w]
    let (lo, hi, t) = axis(w, size[1]);
    let t = Tensor::<Flex, 1>::from_data(burn::tensor::TensorData::new(t, [size[1]]), &device).reshape([1, 1, 1, size[1]]);
    let a = y.clone().select(3, lo);
    a.clone() + (y.select(3, hi) - a) * t
}

/// A 3×3 "same" convolution as one matmul over 9 shifted copies of the zero-padded input
/// (explicit im2col from generic ops): the candidate replacement for the backend's conv.
fn conv3x3_im2col(x: Tensor<Flex, 4>, weight: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
    let [n, c, h, w] = x.dims();
    let c_out = weight.dims()[0];
    let padded = x.pad([(0, 0), (0, 0), (1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0)); // [N, C, h+2, w+2]
    let cols: Vec<Tensor<Flex, 4>> = (0..9).map(|k| padded.clone().narrow(2, k / 3, h).narrow(3, k % 3, w)).collect();
    // [N, C, 9, h·w] in weight order (c, ky, kx).
    let cols = Tensor::stack::<5>(cols, 2).reshape([n, c * 9, h * w]);
    let wm = weight.reshape([1, c_out, c * 9]);
    wm.matmul(cols).reshape([n, c_out, h, w])
}

fn random(shape: [usize; 4]) -> Tensor<Flex, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

#[test]
#[ignore = "measurement"]
fn head_pieces_da3_small_504x378() {
    // Bilinear resizes (align_corners) of one main/aux chain and the final resize.
    let resizes = [([1, 64, 14, 18], [27, 36]), ([1, 64, 27, 36], [54, 72]), ([1, 64, 54, 72], [108, 144]), ([1, 64, 108, 144], [216, 288]), ([1, 32, 216, 288], [378, 504])];
    let (mut total, mut stotal) = (0.0, 0.0);
    for (shape, size) in resizes {
        let x = random(shape);
        let (min, med) = time(5, || resize_bilinear_aligned(x.clone(), size).into_data());
        let (smin, smed) = time(5, || bilinear_separable(x.clone(), size).into_data());
        let a = resize_bilinear_aligned(x.clone(), size).into_data().to_vec::<f32>().unwrap();
        let b = bilinear_separable(x.clone(), size).into_data().to_vec::<f32>().unwrap();
        let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        total += med;
        stotal += smed;
        println!("bilinear {shape:?} -> {size:?}: flex min {min:.1} / median {med:.1} ms; separable min {smin:.1} / median {smed:.1} ms (max diff {err:.1e})");
    }
    println!("bilinear total (one chain + final): flex {total:.1} ms, separable {stotal:.1} ms");
    // 3×3 convolutions at the head's largest sizes.
    let device = Default::default();
    for (c_in, c_out, h, w) in [(64, 64, 108, 144), (64, 32, 216, 288), (32, 64, 216, 288), (32, 32, 378, 504)] {
        let conv = Conv2d::<Flex>::new(random([c_out, c_in, 3, 3]), Some(Tensor::zeros([c_out], &device)), 1, 1);
        let _ = ConvSpec::same(c_in, c_out, 3);
        let x = random([1, c_in, h, w]);
        let (min, med) = time(3, || conv.forward(x.clone()).into_data());
        let gmac = (h * w * c_in * c_out * 9) as f64 / 1e9;
        println!("conv3x3 {c_in}->{c_out} at {h}x{w}: min {min:.1} ms, median {med:.1} ms ({:.1} GMAC/s)", gmac / (min / 1e3));
        let weight = conv.weight.val();
        let (imin, imed) = time(3, || conv3x3_im2col(x.clone(), weight.clone()).into_data());
        let a = conv.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        let b = conv3x3_im2col(x.clone(), weight.clone()).into_data().to_vec::<f32>().unwrap();
        let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        println!("  im2col+matmul: min {imin:.1} ms, median {imed:.1} ms (max diff {err:.1e})");
        let lhs = random([1, 1, c_out, c_in * 9]).reshape([1, c_out, c_in * 9]);
        let rhs = random([1, 1, c_in * 9, h * w]).reshape([1, c_in * 9, h * w]);
        let (mmin, mmed) = time(3, || lhs.clone().matmul(rhs.clone()).into_data());
        println!("  the matmul alone: min {mmin:.1} ms, median {mmed:.1} ms ({:.1} GMAC/s)", gmac / (mmin / 1e3));
    }
}
