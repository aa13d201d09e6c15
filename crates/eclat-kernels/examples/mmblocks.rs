use eclat_kernels::kernels::matmul::{matmul, matmul_blocks};
use eclat_kernels::kernels::Src;
use eclat_kernels::layout::Layout;
use eclat_kernels::pool::pool;
use std::time::Instant;

fn main() {
    let shapes = [
        (50176usize, 9usize, 16usize),
        (12544, 144, 32),
        (64, 1568, 128),
        (128, 784, 256),
    ];
    pool().install(|| {
        for &(m, k, n) in &shapes {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
            let la = Layout::contiguous(&[m, k]);
            let lb = Layout::contiguous(&[k, n]);
            let mut out = vec![0f32; m * n];
            let time = |f: &mut dyn FnMut()| {
                for _ in 0..5 {
                    f()
                }
                let mut ts = vec![];
                for _ in 0..40 {
                    let t = Instant::now();
                    f();
                    ts.push(t.elapsed().as_secs_f64());
                }
                ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
                ts[20] * 1e3
            };
            let optr = out.as_mut_ptr() as usize;
            let tb = time(&mut || {
                matmul_blocks(
                    Src {
                        data: &a,
                        layout: &la,
                    },
                    Src {
                        data: &b,
                        layout: &lb,
                    },
                    |pos, tile: &[f32]| {
                        let o = unsafe {
                            std::slice::from_raw_parts_mut((optr as *mut f32).add(pos), tile.len())
                        };
                        o.copy_from_slice(tile);
                    },
                )
            });
            let tm = time(&mut || {
                matmul(
                    &mut out,
                    Src {
                        data: &a,
                        layout: &la,
                    },
                    Src {
                        data: &b,
                        layout: &lb,
                    },
                )
            });
            println!("[{m},{k}]x[{k},{n}]: blocks+copy {tb:.3} ms, matmul {tm:.3} ms");
        }
    });
}
