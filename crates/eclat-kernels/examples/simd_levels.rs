//! Prints the SIMD levels this CPU can run, one per line (CI runs the kernel
//! tests once per level with `ECLAT_SIMD`).
fn main() {
    for level in eclat_kernels::simd::supported() {
        println!("{}", level.name());
    }
}
