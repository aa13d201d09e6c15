//! The fused kernel against the same ops run one instruction at a time, over
//! random expressions and every kind of input layout.

mod support;

use eclat_kernels::{execute, simd, DType, ErrorKind, Op};
use support::{as_bytes, as_bytes_mut, Builder, ExprStep, Rng};

/// A random float32 expression of about `n` steps over `n_in` sources.
fn random_expr(rng: &mut Rng, n_in: usize, n: usize) -> Vec<ExprStep> {
    let mut steps: Vec<ExprStep> = vec![];
    let mut f32_regs: Vec<usize> = (0..n_in).collect();
    let step = |op: Option<Op>, dtype, operands: Vec<usize>, value| ExprStep {
        op,
        dtype,
        operands,
        value,
    };
    while steps.len() < n {
        let pick = |rng: &mut Rng, regs: &[usize]| regs[rng.below(regs.len())];
        let reg = n_in + steps.len();
        match rng.below(10) {
            0 => steps.push(step(
                None,
                DType::F32,
                vec![],
                (rng.unit() * 4.0 - 2.0) as f64,
            )),
            1 | 2 => {
                let op = [Op::Neg, Op::Recip, Op::Sqrt, Op::Exp2, Op::Log2, Op::Sin][rng.below(6)];
                steps.push(step(Some(op), DType::F32, vec![pick(rng, &f32_regs)], 0.0));
            }
            3..=6 => {
                let op = [Op::Add, Op::Mul, Op::Maximum, Op::Minimum][rng.below(4)];
                steps.push(step(
                    Some(op),
                    DType::F32,
                    vec![pick(rng, &f32_regs), pick(rng, &f32_regs)],
                    0.0,
                ));
            }
            7 => {
                // where(a < b, c, d)
                steps.push(step(
                    Some(Op::Lt),
                    DType::Bool,
                    vec![pick(rng, &f32_regs), pick(rng, &f32_regs)],
                    0.0,
                ));
                steps.push(step(
                    Some(Op::Where),
                    DType::F32,
                    vec![reg, pick(rng, &f32_regs), pick(rng, &f32_regs)],
                    0.0,
                ));
                f32_regs.push(reg + 1);
                continue;
            }
            _ => {
                // a float64 detour: cast up, multiply, cast back
                steps.push(step(
                    Some(Op::Cast),
                    DType::F64,
                    vec![pick(rng, &f32_regs)],
                    0.0,
                ));
                steps.push(step(Some(Op::Mul), DType::F64, vec![reg, reg], 0.0));
                steps.push(step(Some(Op::Cast), DType::F32, vec![reg + 1], 0.0));
                f32_regs.push(reg + 2);
                continue;
            }
        }
        f32_regs.push(reg);
    }
    if steps.last().unwrap().dtype != DType::F32 || steps.last().unwrap().op.is_none() {
        let last = *f32_regs.last().unwrap();
        steps.push(step(
            Some(Op::Add),
            DType::F32,
            vec![last, 0.min(last)],
            0.0,
        ));
    }
    steps
}

/// Loads input `k` of `shape` through a random kind of view; returns the value
/// and the buffer to pass.
fn random_view(b: &mut Builder, rng: &mut Rng, k: usize, shape: &[usize]) -> (usize, Vec<f32>) {
    let nd = shape.len();
    let fill = |rng: &mut Rng, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                if rng.below(50) == 0 {
                    0.0
                } else {
                    rng.unit() * 6.0 - 3.0
                }
            })
            .collect()
    };
    match if nd == 0 { 0 } else { rng.below(5) } {
        1 => {
            // a transposed buffer
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let v = b.load(k, DType::F32, &rev);
            let order: Vec<f64> = (0..nd).rev().map(|d| d as f64).collect();
            (
                b.op(Op::Permute, DType::F32, shape, &[v], &order),
                fill(rng, rev.iter().product()),
            )
        }
        2 => {
            // broadcast along the first axis
            let mut small = shape.to_vec();
            small[0] = 1;
            let v = b.load(k, DType::F32, &small);
            (
                b.op(Op::Expand, DType::F32, shape, &[v], &[]),
                fill(rng, small.iter().product()),
            )
        }
        3 => {
            // every other element of the last axis
            let mut big = shape.to_vec();
            big[nd - 1] = 2 * shape[nd - 1] + 1;
            let v = b.load(k, DType::F32, &big);
            let args: Vec<f64> = (0..nd)
                .flat_map(|d| if d == nd - 1 { [1.0, 2.0] } else { [0.0, 1.0] })
                .collect();
            (
                b.op(Op::Slice, DType::F32, shape, &[v], &args),
                fill(rng, big.iter().product()),
            )
        }
        4 => {
            // one value broadcast everywhere
            let ones = vec![1; nd];
            let v = b.load(k, DType::F32, &ones);
            (b.op(Op::Expand, DType::F32, shape, &[v], &[]), fill(rng, 1))
        }
        _ => (
            b.load(k, DType::F32, shape),
            fill(rng, shape.iter().product()),
        ),
    }
}

/// Two programs loading the same `n_in` random views of `shape` (one for the
/// fused kernel, one for the op-at-a-time version), their source values, and
/// the input buffers.
type Program = (Builder, Vec<usize>);
fn twin_programs(rng: &mut Rng, n_in: usize, shape: &[usize]) -> (Program, Program, Vec<Vec<f32>>) {
    let (mut fused, mut plain) = ((Builder::default(), vec![]), (Builder::default(), vec![]));
    let mut inputs = vec![];
    for k in 0..n_in {
        let state = rng.0;
        let (v, data) = random_view(&mut fused.0, rng, k, shape);
        rng.0 = state;
        let (w, _) = random_view(&mut plain.0, rng, k, shape);
        fused.1.push(v);
        plain.1.push(w);
        inputs.push(data);
    }
    (fused, plain, inputs)
}

/// Emits the steps one primitive at a time; returns the root's value.
fn unfused(b: &mut Builder, shape: &[usize], srcs: &[usize], steps: &[ExprStep]) -> usize {
    let mut regs: Vec<usize> = srcs.to_vec();
    for s in steps {
        let v = match s.op {
            None => b.fused(Op::Add, s.dtype, shape, &[], &[], std::slice::from_ref(s)),
            Some(op) => {
                let operands: Vec<usize> = s.operands.iter().map(|&o| regs[o]).collect();
                b.op(op, s.dtype, shape, &operands, &[])
            }
        };
        regs.push(v);
    }
    *regs.last().unwrap()
}

fn run(
    words: &[f64],
    inputs: &[Vec<f32>],
    out_len: usize,
) -> Result<Vec<f32>, eclat_kernels::KernelError> {
    let ins: Vec<&[u8]> = inputs.iter().map(|v| as_bytes(v)).collect();
    let mut out = vec![0f32; out_len];
    execute(words, &ins, &mut [as_bytes_mut(&mut out)])?;
    Ok(out)
}

const SHAPES: &[&[usize]] = &[
    &[],
    &[0],
    &[1],
    &[7],
    &[3, 5],
    &[4, 1, 6],
    &[2, 3, 0],
    &[37, 129],
    &[130, 300],
    &[3, 40_000],
];

#[test]
fn fused_maps_match_one_op_at_a_time() {
    let mut rng = Rng(0x5eed_f00d);
    for trial in 0..300 {
        let shape = SHAPES[trial % SHAPES.len()];
        let n_in = 1 + rng.below(3);
        let len = 1 + rng.below(12);
        let steps = random_expr(&mut rng, n_in, len);
        let root_op = steps.last().unwrap().op.unwrap();
        let ((mut fused, fsrcs), (mut plain, psrcs), inputs) = twin_programs(&mut rng, n_in, shape);
        let root = fused.fused(root_op, DType::F32, shape, &fsrcs, &[], &steps);
        let proot = unfused(&mut plain, shape, &psrcs, &steps);
        let n = shape.iter().product();
        let got = run(&fused.finish(&[root]), &inputs, n).unwrap();
        let want = run(&plain.finish(&[proot]), &inputs, n).unwrap();
        for i in 0..n {
            let same =
                got[i].to_bits() == want[i].to_bits() || (got[i].is_nan() && want[i].is_nan());
            assert!(
                same,
                "trial {trial}, shape {shape:?}, position {i}: fused {} vs {} for {steps:?}",
                got[i], want[i]
            );
        }
    }
}

/// Maximum and minimum against a constant, either side, keep PyTorch's rules
/// at every SIMD level: NaN from either side (the left one's bits when both
/// are), and the left operand on a tie of signed zeros.
#[test]
fn maximum_and_minimum_with_a_constant_keep_nan_and_signed_zeros() {
    let specials = [
        -0.0,
        0.0,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1.0,
        -1.0,
        2.5,
    ];
    let x: Vec<f32> = (0..20_000).map(|i| specials[i % specials.len()]).collect();
    for c in [0.0, -0.0, f64::NAN, 1.0, f64::NEG_INFINITY] {
        for (op, scalar) in [
            (
                Op::Maximum,
                eclat_kernels::dtype::max_nan::<f32> as fn(f32, f32) -> f32,
            ),
            (Op::Minimum, eclat_kernels::dtype::min_nan::<f32>),
        ] {
            for constant_first in [false, true] {
                // -x first, so that the constant meets a computed tile.
                let operands = if constant_first { [2, 1] } else { [1, 2] };
                let steps = [
                    ExprStep::f32(Op::Neg, &[0]),
                    ExprStep::f32_const(c),
                    ExprStep::f32(op, &operands),
                ];
                let mut b = Builder::default();
                let v = b.load(0, DType::F32, &[x.len()]);
                let y = b.fused(op, DType::F32, &[x.len()], &[v], &[], &steps);
                let got = run(&b.finish(&[y]), std::slice::from_ref(&x), x.len()).unwrap();
                for (i, (&g, &x)) in got.iter().zip(&x).enumerate() {
                    let x = -x;
                    let want = if constant_first {
                        scalar(c as f32, x)
                    } else {
                        scalar(x, c as f32)
                    };
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{} of {x} and {c} (constant first: {constant_first}), position {i}",
                        op.name()
                    );
                }
            }
        }
    }
}

/// Float expressions over a boolean input (a mask), through every kind of
/// view, and comparisons with a boolean result, fused and one op at a time,
/// against the values computed here (the tile machine reads the mask as 0 and
/// 1 of the float dtype, and writes a comparison's 0 and 1 as bytes).
#[test]
fn boolean_inputs_and_results_match_the_values_computed_here() {
    let mut rng = Rng(0x0b00_1ea4);
    let bool_step = |op, operands: &[usize]| ExprStep {
        op: Some(op),
        dtype: DType::Bool,
        operands: operands.to_vec(),
        value: 0.0,
    };
    // Registers: 0 is the mask, 1 is x. Each expression with its value at
    // one position, as a float (a boolean result as 0 or 1).
    type Value = fn(bool, f32) -> f32;
    let exprs: [(Vec<ExprStep>, Value); 5] = [
        // where(m, x, 0.5)
        (
            vec![
                ExprStep::f32_const(0.5),
                ExprStep::f32(Op::Where, &[0, 1, 2]),
            ],
            |m, x| if m { x } else { 0.5 },
        ),
        // cast(m) * x + cast(!m)
        (
            vec![
                ExprStep::f32(Op::Cast, &[0]),
                ExprStep::f32(Op::Mul, &[2, 1]),
                bool_step(Op::BitwiseNot, &[0]),
                ExprStep::f32(Op::Cast, &[4]),
                ExprStep::f32(Op::Add, &[3, 5]),
            ],
            |m, x| (m as u8 as f32) * x + (!m as u8 as f32),
        ),
        // where(!m, -x, x)
        (
            vec![
                bool_step(Op::BitwiseNot, &[0]),
                ExprStep::f32(Op::Neg, &[1]),
                ExprStep::f32(Op::Where, &[2, 3, 1]),
            ],
            |m, x| if !m { -x } else { x },
        ),
        // x < 0.25: a boolean result
        (
            vec![ExprStep::f32_const(0.25), bool_step(Op::Lt, &[1, 2])],
            |_, x| (x < 0.25) as u8 as f32,
        ),
        // where(m, x, 0) == x
        (
            vec![
                ExprStep::f32_const(0.0),
                ExprStep::f32(Op::Where, &[0, 1, 2]),
                bool_step(Op::Eq, &[3, 1]),
            ],
            |m, x| ((if m { x } else { 0.0 }) == x) as u8 as f32,
        ),
    ];
    let shapes: &[&[usize]] = &[&[7], &[5000], &[37, 129], &[64, 200], &[3, 40_000]];
    for &shape in shapes {
        let (n, nd) = (shape.iter().product::<usize>(), shape.len());
        let x: Vec<f32> = (0..n).map(|_| rng.unit() * 4.0 - 2.0).collect();
        for view in 0..4 {
            // The mask's buffer shape, and how it becomes `shape`.
            let stored: Vec<usize> = match view {
                1 => shape.iter().rev().copied().collect(),
                2 => [&[1][..], &shape[1..]].concat(),
                3 => vec![1; nd],
                _ => shape.to_vec(),
            };
            let mask: Vec<u8> = (0..stored.iter().product::<usize>())
                .map(|_| (rng.below(3) == 0) as u8)
                .collect();
            let load_mask = |b: &mut Builder| {
                let m = b.load(0, DType::Bool, &stored);
                match view {
                    1 => {
                        let order: Vec<f64> = (0..nd).rev().map(|d| d as f64).collect();
                        b.op(Op::Permute, DType::Bool, shape, &[m], &order)
                    }
                    2 | 3 => b.op(Op::Expand, DType::Bool, shape, &[m], &[]),
                    _ => m,
                }
            };
            // The mask's value at each position of `shape`.
            let mask_at = |i: usize| -> bool {
                let k = match view {
                    1 => {
                        // Position i's index, read in the reversed buffer.
                        let (mut rest, mut k, mut stride) = (i, 0, 1);
                        for &d in shape.iter().rev() {
                            k = k * d + rest % d;
                            rest /= d;
                            stride *= d;
                        }
                        debug_assert_eq!(stride, n);
                        k
                    }
                    2 => i % (n / shape[0]),
                    3 => 0,
                    _ => i,
                };
                mask[k] != 0
            };
            for (steps, value) in &exprs {
                let root = steps.last().unwrap();
                let want: Vec<u8> = (0..n)
                    .flat_map(|i| {
                        let v = value(mask_at(i), x[i]);
                        match root.dtype {
                            DType::Bool => vec![(v != 0.0) as u8],
                            _ => v.to_le_bytes().to_vec(),
                        }
                    })
                    .collect();
                let mut outs = vec![];
                for fused in [true, false] {
                    let mut b = Builder::default();
                    let m = load_mask(&mut b);
                    let v = b.load(1, DType::F32, shape);
                    let y = if fused {
                        b.fused(root.op.unwrap(), root.dtype, shape, &[m, v], &[], steps)
                    } else {
                        unfused(&mut b, shape, &[m, v], steps)
                    };
                    let mut out = vec![0u8; n * root.dtype.size()];
                    execute(&b.finish(&[y]), &[&mask, as_bytes(&x)], &mut [&mut out]).unwrap();
                    outs.push(out);
                }
                assert!(
                    outs[0] == want && outs[1] == want,
                    "shape {shape:?}, mask view {view}, {steps:?}"
                );
            }
        }
    }
}

/// Outputs of 32 MiB and more are written with non-temporal stores from the
/// first vector-aligned position: the same bits at every alignment, and
/// nothing written outside the output.
#[test]
fn streamed_outputs_match_at_any_alignment() {
    let (f, c) = (ExprStep::f32, ExprStep::f32_const);
    // sin(x) * exp2(y) + sqrt(max(x, 0.5)) with y a transposed view
    let steps = vec![
        f(Op::Sin, &[0]),        // 2
        f(Op::Exp2, &[1]),       // 3
        f(Op::Mul, &[2, 3]),     // 4
        c(0.5),                  // 5
        f(Op::Maximum, &[0, 5]), // 6
        f(Op::Sqrt, &[6]),       // 7
        f(Op::Add, &[4, 7]),     // 8
    ];
    let shape = [2_100_003, 4];
    let n: usize = shape.iter().product();
    let mut rng = Rng(0x57_2ea3);
    let x: Vec<f32> = (0..n).map(|_| rng.unit() * 8.0 - 4.0).collect();
    let y: Vec<f32> = (0..n).map(|_| rng.unit() * 8.0 - 4.0).collect();
    let program = |fuse: bool| {
        let mut b = Builder::default();
        let x = b.load(0, DType::F32, &shape);
        let yt = b.load(1, DType::F32, &[4, 2_100_003]);
        let y = b.op(Op::Permute, DType::F32, &shape, &[yt], &[1.0, 0.0]);
        let root = if fuse {
            b.fused(Op::Add, DType::F32, &shape, &[x, y], &[], &steps)
        } else {
            unfused(&mut b, &shape, &[x, y], &steps)
        };
        b.finish(&[root])
    };
    let want = run(&program(false), &[x.clone(), y.clone()], n).unwrap();
    let fused = program(true);
    const SENTINEL: f32 = -1234.5;
    for offset in [0, 1, 3, 15, 16] {
        let mut buf = vec![SENTINEL; n + 32];
        execute(
            &fused,
            &[as_bytes(&x), as_bytes(&y)],
            &mut [as_bytes_mut(&mut buf[offset..offset + n])],
        )
        .unwrap();
        assert!(
            buf[..offset].iter().all(|&v| v == SENTINEL),
            "offset {offset}: written before the output"
        );
        assert!(
            buf[offset + n..].iter().all(|&v| v == SENTINEL),
            "offset {offset}: written after the output"
        );
        for (i, (g, w)) in buf[offset..offset + n].iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "offset {offset}, position {i}: fused {g} vs {w}"
            );
        }
    }
}

#[test]
fn fused_reductions_match_map_then_reduce() {
    let mut rng = Rng(0xabc_def);
    let cases: &[(&[usize], &[usize])] = &[
        (&[], &[]),
        (&[7], &[0]),
        (&[3, 5], &[1]),
        (&[3, 5], &[0]),
        (&[3, 5], &[0, 1]),
        (&[4, 0, 3], &[0]),
        (&[300, 200], &[0]),
        (&[300, 200], &[1]),
        (&[2, 40_000], &[1]),
        (&[40_000, 3], &[0]),
        (&[6, 50, 40], &[0, 2]),
        (&[6, 50, 40], &[1]),
    ];
    for trial in 0..96 {
        let (shape, axes) = cases[trial % cases.len()];
        let reduce = [Op::Sum, Op::Max, Op::Min, Op::Prod][trial / cases.len() % 4];
        let n_in = 1 + rng.below(2);
        // recip and exp2 can make huge terms whose sums cancel differently in
        // another order; swap them for sqrt to keep the comparison meaningful.
        let len = 1 + rng.below(6);
        let mut steps = random_expr(&mut rng, n_in, len);
        for s in &mut steps {
            if matches!(s.op, Some(Op::Recip | Op::Exp2)) {
                s.op = Some(Op::Sqrt);
            }
        }
        if reduce == Op::Prod {
            // a product of values near 1 stays finite
            let last = n_in + steps.len() - 1;
            steps.push(ExprStep {
                op: Some(Op::Sin),
                dtype: DType::F32,
                operands: vec![last],
                value: 0.0,
            });
            steps.push(ExprStep {
                op: None,
                dtype: DType::F32,
                operands: vec![],
                value: 1e-3,
            });
            steps.push(ExprStep {
                op: Some(Op::Mul),
                dtype: DType::F32,
                operands: vec![last + 1, last + 2],
                value: 0.0,
            });
            steps.push(ExprStep {
                op: None,
                dtype: DType::F32,
                operands: vec![],
                value: 1.0,
            });
            steps.push(ExprStep {
                op: Some(Op::Add),
                dtype: DType::F32,
                operands: vec![last + 3, last + 4],
                value: 0.0,
            });
        }
        let out_shape: Vec<usize> = (0..shape.len())
            .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
            .collect();
        let mut axis_args = vec![axes.len() as f64];
        axis_args.extend(axes.iter().map(|&a| a as f64));
        let ((mut fused, fsrcs), (mut plain, psrcs), inputs) = twin_programs(&mut rng, n_in, shape);
        let root = fused.fused(reduce, DType::F32, &out_shape, &fsrcs, &axis_args, &steps);
        let mapped = unfused(&mut plain, shape, &psrcs, &steps);
        let proot = plain.op(reduce, DType::F32, &out_shape, &[mapped], &axis_args);
        let n = out_shape.iter().product();
        let got = run(&fused.finish(&[root]), &inputs, n).unwrap();
        let want = run(&plain.finish(&[proot]), &inputs, n).unwrap();
        for i in 0..n {
            let (g, w) = (got[i], want[i]);
            let close =
                g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * w.abs().max(1.0);
            assert!(close, "trial {trial} {reduce:?} over {axes:?} of {shape:?}, output {i}: fused {g} vs {w} for {steps:?}");
        }
    }
}

#[test]
fn ill_typed_expressions_are_errors() {
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[4]);
    // sqrt of a bool register
    let steps = [
        ExprStep {
            op: Some(Op::Lt),
            dtype: DType::Bool,
            operands: vec![0, 0],
            value: 0.0,
        },
        ExprStep {
            op: Some(Op::Sqrt),
            dtype: DType::Bool,
            operands: vec![1],
            value: 0.0,
        },
    ];
    let root = b.fused(Op::Sqrt, DType::Bool, &[4], &[x], &[], &steps);
    let words = b.finish(&[root]);
    let input = vec![1f32; 4];
    let mut out = vec![0u8; 4];
    let err = execute(&words, &[as_bytes(&input)], &mut [&mut out]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DType, "{err}");
    assert!(err.to_string().contains("sqrt"), "{err}");

    // a step reading a register defined after it
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[4]);
    let steps = [ExprStep {
        op: Some(Op::Neg),
        dtype: DType::F32,
        operands: vec![1],
        value: 0.0,
    }];
    let root = b.fused(Op::Neg, DType::F32, &[4], &[x], &[], &steps);
    let err = run(&b.finish(&[root]), &[vec![0f32; 4]], 4).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Format, "{err}");
}

#[test]
fn simd_level_honours_eclat_simd() {
    let level = simd::level();
    assert!(simd::supported().contains(&level));
    if let Ok(name) = std::env::var("ECLAT_SIMD") {
        if let Some(asked) = simd::Level::from_name(&name).filter(|l| simd::supported().contains(l))
        {
            assert_eq!(level, asked, "ECLAT_SIMD={name} was not applied");
        }
    } else {
        assert_eq!(level, simd::detected());
    }
    eprintln!("kernels ran at SIMD level {}", level.name());
}

#[test]
fn matmul_epilogues_match_matmul_then_map() {
    let mut rng = Rng(0x3a7);
    // (batch, m, k, n): single block, many blocks (some uneven, some batched),
    // batched, empty inner dimension
    for &(batch, m, k, n) in &[
        (1, 3, 4, 5),
        (1, 300, 70, 600),
        (1, 1037, 5, 3),
        (2, 200, 3, 7),
        (3, 40, 9, 17),
        (1, 8, 0, 8),
        (2, 1, 1, 1),
    ] {
        let (a_shape, b_shape, o_shape) = ([batch, m, k], [batch, k, n], [batch, m, n]);
        let a: Vec<f32> = (0..batch * m * k).map(|_| rng.unit() - 0.5).collect();
        let b: Vec<f32> = (0..batch * k * n).map(|_| rng.unit() - 0.5).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.unit() - 0.5).collect();
        // relu(a@b + bias) * 2: register 0 is the product, 1 the broadcast bias
        let steps = vec![
            ExprStep {
                op: Some(Op::Add),
                dtype: DType::F32,
                operands: vec![0, 1],
                value: 0.0,
            },
            ExprStep {
                op: None,
                dtype: DType::F32,
                operands: vec![],
                value: 0.0,
            },
            ExprStep {
                op: Some(Op::Maximum),
                dtype: DType::F32,
                operands: vec![2, 3],
                value: 0.0,
            },
            ExprStep {
                op: None,
                dtype: DType::F32,
                operands: vec![],
                value: 2.0,
            },
            ExprStep {
                op: Some(Op::Mul),
                dtype: DType::F32,
                operands: vec![4, 5],
                value: 0.0,
            },
        ];
        let build = |fused: bool| {
            let mut p = Builder::default();
            let va = p.load(0, DType::F32, &a_shape);
            let vb = p.load(1, DType::F32, &b_shape);
            let vbias = p.load(2, DType::F32, &[1, 1, n]);
            let vbias = p.op(Op::Expand, DType::F32, &o_shape, &[vbias], &[]);
            let root = if fused {
                p.fused(
                    Op::Matmul,
                    DType::F32,
                    &o_shape,
                    &[va, vb, vbias],
                    &[],
                    &steps,
                )
            } else {
                let prod = p.op(Op::Matmul, DType::F32, &o_shape, &[va, vb], &[]);
                unfused(&mut p, &o_shape, &[prod, vbias], &steps)
            };
            p.finish(&[root])
        };
        let inputs = vec![a.clone(), b.clone(), bias.clone()];
        let got = run(&build(true), &inputs, batch * m * n).unwrap();
        let want = run(&build(false), &inputs, batch * m * n).unwrap();
        assert_eq!(got, want, "({batch}, {m}, {k}, {n})");
    }
}

/// Sources that repeat along the iteration order (a bias row over a batch, a
/// channel bias over NCHW, a strided row) are read from a laid-out pattern at
/// any piece position: `x + bias` (tile machine) and `x < bias` (chunked
/// machine, boolean result) against values computed here, for periods up to
/// and past the pattern's limit, on one thread and across threads.
#[test]
fn repeating_sources_match_the_values_computed_here() {
    let mut rng = Rng(0x0b1a5);
    // (output shape, bias storage shape, how the bias is viewed)
    enum View {
        /// Expanded from the storage shape.
        Expand,
        /// Every other element of the storage's last axis, then expanded.
        EveryOther,
    }
    let cases: [(&[usize], &[usize], View); 8] = [
        (&[1024, 16], &[1, 16], View::Expand),
        (&[64, 300], &[1, 300], View::Expand),
        (&[4096, 64], &[1, 64], View::Expand),
        (&[2, 16384], &[1, 16384], View::Expand),
        (&[3, 16385], &[1, 16385], View::Expand),
        (&[8, 16, 12, 12], &[1, 16, 1, 1], View::Expand),
        (&[4, 50, 100], &[4, 1, 100], View::Expand),
        (&[1500, 20], &[1, 41], View::EveryOther),
    ];
    for (shape, stored, view) in cases {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|_| rng.unit() * 4.0 - 2.0).collect();
        let bias: Vec<f32> = (0..stored.iter().product::<usize>())
            .map(|_| rng.unit() * 4.0 - 2.0)
            .collect();
        // The bias value at each output position, indexed by hand.
        let nd = shape.len();
        let bias_at = |i: usize| -> f32 {
            let (mut rem, mut offset, mut stride) = (i, 0, 1);
            let mut strides = vec![0; nd];
            for d in (0..nd).rev() {
                strides[d] = stride;
                stride *= stored[d];
            }
            for d in (0..nd).rev() {
                let c = rem % shape[d];
                rem /= shape[d];
                offset += match view {
                    View::Expand if stored[d] == 1 => 0,
                    View::Expand => c * strides[d],
                    View::EveryOther if d == nd - 1 => 1 + 2 * c,
                    View::EveryOther => 0,
                };
            }
            bias[offset]
        };
        for (op, dtype) in [(Op::Add, DType::F32), (Op::Lt, DType::Bool)] {
            let mut p = Builder::default();
            let vx = p.load(0, DType::F32, shape);
            let vb = p.load(1, DType::F32, stored);
            let vb = match view {
                View::Expand => vb,
                View::EveryOther => {
                    let mut row = stored.to_vec();
                    row[nd - 1] = shape[nd - 1];
                    let args: Vec<f64> = (0..nd)
                        .flat_map(|d| if d == nd - 1 { [1.0, 2.0] } else { [0.0, 1.0] })
                        .collect();
                    p.op(Op::Slice, DType::F32, &row, &[vb], &args)
                }
            };
            let vb = p.op(Op::Expand, DType::F32, shape, &[vb], &[]);
            let step = ExprStep {
                op: Some(op),
                dtype,
                operands: vec![0, 1],
                value: 0.0,
            };
            let root = p.fused(op, dtype, shape, &[vx, vb], &[], &[step]);
            let words = p.finish(&[root]);
            let ins = [as_bytes(&x), as_bytes(&bias)];
            let mut out = vec![0u8; n * dtype.size()];
            execute(&words, &ins, &mut [&mut out]).unwrap();
            for i in 0..n {
                let (got, want) = if dtype == DType::Bool {
                    (out[i] as f32, (x[i] < bias_at(i)) as u8 as f32)
                } else {
                    let got = f32::from_ne_bytes(out[4 * i..4 * i + 4].try_into().unwrap());
                    (got, x[i] + bias_at(i))
                };
                assert_eq!(
                    got, want,
                    "{op:?} over {shape:?} from {stored:?}, position {i}"
                );
            }
        }
    }
}

/// A source read across its memory order (a transposed matrix, read by bands
/// of square blocks) in a fused `2 * xᵀ + y`, float32 and float64, against
/// values computed here; shapes give pieces of fewer and more than 16 rows,
/// bands of fewer than 16 rows, rows that do or do not divide a piece, and
/// [300, 4000] is copied by blocks before the kernel reads it.
#[test]
fn transposed_sources_match_the_values_computed_here() {
    let mut rng = Rng(0x7a05);
    for (rows, cols) in [
        (64, 5000),
        (16, 16),
        (300, 130),
        (4096, 20),
        (3, 40_000),
        (50_000, 3),
        (300, 4000),
        (10, 784),
        (37, 700),
    ] {
        // x is stored [cols, rows] and read as its transpose, [rows, cols].
        let x: Vec<f64> = (0..rows * cols)
            .map(|_| (rng.unit() * 8.0 - 4.0) as f64)
            .collect();
        let y: Vec<f64> = (0..rows * cols)
            .map(|_| (rng.unit() * 8.0 - 4.0) as f64)
            .collect();
        for dtype in [DType::F32, DType::F64] {
            let mut p = Builder::default();
            let vx = p.load(0, dtype, &[cols, rows]);
            let vx = p.op(Op::Permute, dtype, &[rows, cols], &[vx], &[1.0, 0.0]);
            let vy = p.load(1, dtype, &[rows, cols]);
            let step = |op, operands: &[usize], value| ExprStep {
                op,
                dtype,
                operands: operands.to_vec(),
                value,
            };
            let steps = [
                step(None, &[], 2.0),
                step(Some(Op::Mul), &[0, 2], 0.0),
                step(Some(Op::Add), &[3, 1], 0.0),
            ];
            let root = p.fused(Op::Add, dtype, &[rows, cols], &[vx, vy], &[], &steps);
            let words = p.finish(&[root]);
            let n = rows * cols;
            let want = |i: usize| 2.0 * x[(i % cols) * rows + i / cols] + y[i];
            if dtype == DType::F32 {
                let (x32, y32): (Vec<f32>, Vec<f32>) = (
                    x.iter().map(|&v| v as f32).collect(),
                    y.iter().map(|&v| v as f32).collect(),
                );
                let got = run(&words, &[x32, y32], n).unwrap();
                for (i, &g) in got.iter().enumerate() {
                    assert_eq!(g, want(i) as f32, "[{rows}, {cols}] float32, position {i}");
                }
            } else {
                let mut out = vec![0f64; n];
                execute(
                    &words,
                    &[as_bytes(&x), as_bytes(&y)],
                    &mut [as_bytes_mut(&mut out)],
                )
                .unwrap();
                for (i, &g) in out.iter().enumerate() {
                    assert_eq!(g, want(i), "[{rows}, {cols}] float64, position {i}");
                }
            }
        }
    }
}

/// A source with one value per row of its innermost axis (a softmax's row
/// maximum, broadcast) in a fused `x - m`, float32 and float64, against values
/// computed here: rows shorter and longer than a vector, up to and past a
/// whole piece, outer axes that wrap within a piece, and pieces that start
/// and end inside rows.
#[test]
fn row_broadcast_sources_match_the_values_computed_here() {
    let mut rng = Rng(0xb70a);
    for shape in [
        [3usize, 5, 7],
        [1000, 37, 3],
        [2, 3000, 10],
        [1, 70_001, 15],
        [4, 9, 1],
        [300, 7, 20],
        [50, 40, 100],
        [3, 7, 3001],
        [2, 3, 10_000],
    ] {
        let [a, b, c] = shape;
        let n = a * b * c;
        let x: Vec<f64> = (0..n).map(|_| (rng.unit() * 8.0 - 4.0) as f64).collect();
        let m: Vec<f64> = (0..a * b)
            .map(|_| (rng.unit() * 8.0 - 4.0) as f64)
            .collect();
        // m is stored [b, a] and read transposed, so its outer axes do not
        // merge into one: rows step along b, and b wraps inside pieces.
        for (dtype, transposed) in [
            (DType::F32, false),
            (DType::F64, false),
            (DType::F32, true),
            (DType::F64, true),
        ] {
            let m_at = |r: usize| match transposed {
                true => (r % b) * a + r / b,
                false => r,
            };
            let mut p = Builder::default();
            let vx = p.load(0, dtype, &shape);
            let vm = match transposed {
                true => {
                    let stored = p.load(1, dtype, &[b, a, 1]);
                    p.op(Op::Permute, dtype, &[a, b, 1], &[stored], &[1.0, 0.0, 2.0])
                }
                false => p.load(1, dtype, &[a, b, 1]),
            };
            let vm = p.op(Op::Expand, dtype, &shape, &[vm], &[]);
            let steps = [
                ExprStep {
                    op: Some(Op::Neg),
                    dtype,
                    operands: vec![1],
                    value: 0.0,
                },
                ExprStep {
                    op: Some(Op::Add),
                    dtype,
                    operands: vec![0, 2],
                    value: 0.0,
                },
            ];
            let root = p.fused(Op::Add, dtype, &shape, &[vx, vm], &[], &steps);
            let words = p.finish(&[root]);
            let want = |i: usize| x[i] - m[m_at(i / c)];
            if dtype == DType::F32 {
                let (x32, m32): (Vec<f32>, Vec<f32>) = (
                    x.iter().map(|&v| v as f32).collect(),
                    m.iter().map(|&v| v as f32).collect(),
                );
                let got = run(&words, &[x32.clone(), m32.clone()], n).unwrap();
                for (i, &g) in got.iter().enumerate() {
                    let w = x32[i] - m32[m_at(i / c)];
                    assert_eq!(g, w, "{shape:?} float32 ({transposed}), position {i}");
                }
            } else {
                let mut out = vec![0f64; n];
                execute(
                    &words,
                    &[as_bytes(&x), as_bytes(&m)],
                    &mut [as_bytes_mut(&mut out)],
                )
                .unwrap();
                for (i, &g) in out.iter().enumerate() {
                    assert_eq!(g, want(i), "{shape:?} float64 ({transposed}), position {i}");
                }
            }
        }
    }
}
