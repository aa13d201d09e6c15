use eclat_kernels::pool::pool;
use gemm::Parallelism;
use std::time::Instant;

unsafe fn g(
    m: usize,
    k: usize,
    n: usize,
    dst: *mut f32,
    a: *const f32,
    ars: isize,
    acs: isize,
    b: *const f32,
    brs: isize,
    bcs: isize,
    p: Parallelism,
) {
    gemm::gemm(
        m, n, k, dst, 1, n as isize, false, a, acs, ars, b, bcs, brs, 0.0, 1.0, false, false,
        false, p,
    )
}

fn main() {
    // (m, k, n, a transposed?)
    let shapes = [
        (144usize, 12544usize, 32usize, true),
        (9, 50176, 16, true),
        (12544, 144, 32, false),
        (12544, 32, 144, false),
        (50176, 9, 16, false),
        (64, 1568, 128, false),
        (1568, 64, 128, true),
    ];
    pool().install(|| {
        for &(m, k, n, at) in &shapes {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
            // a stored as [k, m] when transposed
            let (ars, acs) = if at { (1isize, m as isize) } else { (k as isize, 1isize) };
            let mut out = vec![0f32; m * n];
            let flops = 2.0 * (m * n * k) as f64;
            let time = |f: &mut dyn FnMut()| {
                for _ in 0..5 { f() }
                let mut ts = vec![];
                for _ in 0..30 { let t = Instant::now(); f(); ts.push(t.elapsed().as_secs_f64()); }
                ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
                ts[15]
            };
            let t1 = time(&mut || unsafe { g(m, k, n, out.as_mut_ptr(), a.as_ptr(), ars, acs, b.as_ptr(), n as isize, 1, Parallelism::None) });
            let t2 = time(&mut || unsafe { g(m, k, n, out.as_mut_ptr(), a.as_ptr(), ars, acs, b.as_ptr(), n as isize, 1, Parallelism::Rayon(2)) });
            let mut part = vec![0f32; m * n];
            let half = k / 2;
            let (ap, bp) = (a.as_ptr() as usize, b.as_ptr() as usize);
            let ts = time(&mut || {
                let (o, p) = (out.as_mut_ptr() as usize, part.as_mut_ptr() as usize);
                rayon::join(
                    || unsafe { g(m, half, n, o as *mut f32, ap as *const f32, ars, acs, bp as *const f32, n as isize, 1, Parallelism::None) },
                    || unsafe { g(m, k - half, n, p as *mut f32, (ap as *const f32).offset(half as isize * acs), ars, acs, (bp as *const f32).add(half * n), n as isize, 1, Parallelism::None) },
                );
                for (x, y) in out.iter_mut().zip(&part) { *x += *y }
            });
            println!("[{m},{k}]x[{k},{n}] at={at}: 1t {:.3} ms {:.0} GF | rayon2 {:.3} ms {:.0} GF | splitK {:.3} ms {:.0} GF", t1 * 1e3, flops / t1 / 1e9, t2 * 1e3, flops / t2 / 1e9, ts * 1e3, flops / ts / 1e9);
        }
    });
}
