use eclat_kernels::{dispatch, math};
use std::time::Instant;
#[inline(always)]
fn sin_all(o: &mut [f32], x: &[f32]) {
    for (o, &x) in o.iter_mut().zip(x) {
        *o = math::sin_f32(x);
    }
}
#[inline(always)]
fn exp2_all(o: &mut [f32], x: &[f32]) {
    for (o, &x) in o.iter_mut().zip(x) {
        *o = math::exp2_f32(x);
    }
}
#[inline(always)]
fn sqrt_all(o: &mut [f32], x: &[f32]) {
    for (o, &x) in o.iter_mut().zip(x) {
        *o = x.sqrt();
    }
}
fn main() {
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 / 1000.0).collect();
    let mut o = vec![0f32; n];
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..16 {
            dispatch!(sin_all(&mut o, &x));
        }
        println!(
            "sin  {:.2} ns/elem",
            t.elapsed().as_secs_f64() * 1e9 / (16 * n) as f64
        );
        let t = Instant::now();
        for _ in 0..16 {
            dispatch!(exp2_all(&mut o, &x));
        }
        println!(
            "exp2 {:.2} ns/elem",
            t.elapsed().as_secs_f64() * 1e9 / (16 * n) as f64
        );
        let t = Instant::now();
        for _ in 0..16 {
            dispatch!(sqrt_all(&mut o, &x));
        }
        println!(
            "sqrt {:.2} ns/elem",
            t.elapsed().as_secs_f64() * 1e9 / (16 * n) as f64
        );
    }
}
