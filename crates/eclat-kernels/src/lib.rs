//! Eclat's kernels: everything that runs when a lazy graph is realized, with no
//! knowledge of Node. The binding crate hands over an encoded [`program`] and the
//! raw bytes of its input and output buffers; [`execute`] decodes it and runs one
//! kernel per instruction on a private thread pool.

pub mod dtype;
pub mod error;
pub mod exec;
pub mod kernels;
pub mod layout;
pub mod machine;
pub mod math;
pub mod op;
pub mod pool;
pub mod program;
pub mod simd;
pub mod vector;

pub use dtype::DType;
pub use error::{ErrorKind, KernelError};
pub use exec::execute;
pub use op::Op;
pub use pool::num_threads;
