//! What decoding works out once per program: every value's layout (views
//! checked there), and the fused kernels' type checks kept for later realizes.

mod support;

use eclat_kernels::kernels::fused::check_cached;
use eclat_kernels::layout::Layout;
use eclat_kernels::program::decode;
use eclat_kernels::{execute, DType, ErrorKind, Op};
use std::borrow::Cow;
use support::{as_bytes, as_bytes_mut, Builder, ExprStep};

#[test]
fn views_get_their_layouts_when_decoding() {
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[2, 3]);
    let t = b.op(Op::Permute, DType::F32, &[3, 2], &[x], &[1.0, 0.0]);
    let flat = b.op(Op::Reshape, DType::F32, &[6], &[t], &[]); // strided: a copy
    let row = b.op(Op::Slice, DType::F32, &[1, 3], &[x], &[1.0, 1.0, 0.0, 1.0]);
    let wide = b.op(Op::Expand, DType::F32, &[4, 3], &[row], &[]);
    let words = b.finish(&[flat, wide]);
    let program = decode(&words).unwrap();
    let layout = |v: usize| &program.layouts[v];
    assert_eq!(layout(x), &Layout::contiguous(&[2, 3]));
    assert_eq!(
        (&layout(t).shape[..], &layout(t).strides[..]),
        (&[3, 2][..], &[1, 3][..])
    );
    assert_eq!(layout(flat), &Layout::contiguous(&[6]));
    assert_eq!(
        (layout(row).offset, &layout(row).strides[..]),
        (3, &[3, 1][..])
    );
    assert_eq!(
        (layout(wide).offset, &layout(wide).strides[..]),
        (3, &[0, 1][..])
    );

    let x_data = [1f32, 2., 3., 4., 5., 6.];
    let (mut flat_out, mut wide_out) = ([0f32; 6], [0f32; 12]);
    for _ in 0..3 {
        execute(
            &words,
            &[as_bytes(&x_data)],
            &mut [as_bytes_mut(&mut flat_out), as_bytes_mut(&mut wide_out)],
        )
        .unwrap();
        assert_eq!(flat_out, [1., 4., 2., 5., 3., 6.]);
        assert_eq!(wide_out, [4., 5., 6., 4., 5., 6., 4., 5., 6., 4., 5., 6.]);
    }
}

#[test]
fn bad_views_are_rejected_when_decoding() {
    let cases: [(Op, &[usize], &[f64]); 5] = [
        (Op::Permute, &[3, 2], &[0.0, 0.0]),         // not a permutation
        (Op::Reshape, &[5], &[]),                    // 5 elements from 6
        (Op::Expand, &[4, 4], &[]),                  // 3 cannot become 4
        (Op::Slice, &[2, 3], &[1.0, 1.0, 0.0, 1.0]), // rows 1..3 of 2
        (Op::Slice, &[1, 3], &[0.0, 0.0, 0.0, 1.0]), // step 0
    ];
    for (op, shape, args) in cases {
        let mut b = Builder::default();
        let x = b.load(0, DType::F32, &[2, 3]);
        let v = b.op(op, DType::F32, shape, &[x], args);
        let err = decode(&b.finish(&[v])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Shape, "{op:?}: {err}");
        assert!(err.to_string().contains(op.name()), "{err}");
    }
}

#[test]
fn a_kept_type_check_still_rejects_other_source_dtypes() {
    let add = |dtype: DType| ExprStep {
        op: Some(Op::Add),
        dtype,
        operands: vec![0, 1],
        value: 0.0,
    };
    // The same expression met first with float32 sources, then (a malformed
    // program) with an int32 one: the check kept for the first must not pass it.
    let program = {
        let mut b = Builder::default();
        let x = b.load(0, DType::F32, &[4]);
        let y = b.load(1, DType::F32, &[4]);
        let s = b.fused(Op::Add, DType::F32, &[4], &[x, y], &[], &[add(DType::F32)]);
        decode(&b.finish(&[s])).unwrap()
    };
    let expr = program.instrs[2].expr.as_ref().unwrap();
    let ok = check_cached(expr, [DType::F32, DType::F32].into_iter()).unwrap();
    assert_eq!(&ok[..], &[DType::F32, DType::F32, DType::F32]);
    let again = check_cached(expr, [DType::F32, DType::F32].into_iter()).unwrap();
    assert!(matches!(again, Cow::Borrowed(_)));
    let err = check_cached(expr, [DType::F32, DType::I32].into_iter()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DType, "{err}");
}

/// What decides whether a program runs on the calling thread: the elements
/// its kernels touch, not the values it names.
#[test]
fn work_counts_kernels_not_loads_and_views() {
    let work = |b: Builder, outs: &[usize]| decode(&b.finish(outs)).unwrap().work();
    let add = ExprStep {
        op: Some(Op::Add),
        dtype: DType::F32,
        operands: vec![0, 0],
        value: 0.0,
    };
    // x + x over 16K elements: one kernel of 16K (the load is free).
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[16384]);
    let y = b.fused(
        Op::Add,
        DType::F32,
        &[16384],
        &[x],
        &[],
        std::slice::from_ref(&add),
    );
    assert_eq!(work(b, &[y]), 16384);
    // A sum reads its whole input.
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[200, 300]);
    let s = b.op(Op::Sum, DType::F32, &[200, 1], &[x], &[1.0, 1.0]);
    assert_eq!(work(b, &[s]), 60_000);
    // Views are free, except a reshape of a strided view (a copy).
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[200, 300]);
    let t = b.op(Op::Permute, DType::F32, &[300, 200], &[x], &[1.0, 0.0]);
    let flat = b.op(Op::Reshape, DType::F32, &[60_000], &[x], &[]);
    assert_eq!(work(b, &[t, flat]), 0);
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[200, 300]);
    let t = b.op(Op::Permute, DType::F32, &[300, 200], &[x], &[1.0, 0.0]);
    let flat = b.op(Op::Reshape, DType::F32, &[60_000], &[t], &[]);
    assert_eq!(work(b, &[flat]), 60_000);
    // A matmul, however small, counts as large.
    let mut b = Builder::default();
    let a = b.load(0, DType::F32, &[2, 2]);
    let m = b.op(Op::Matmul, DType::F32, &[2, 2], &[a, a], &[]);
    assert_eq!(work(b, &[m]), usize::MAX);
}
