//! The private thread pool every kernel runs on.

use std::sync::OnceLock;

/// Elementwise work below this many elements stays on one thread: thread hand-off
/// costs more than it saves (PyTorch uses the same threshold).
pub const PARALLEL_THRESHOLD: usize = 32 * 1024;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// Threads in the pool: `ECLAT_NUM_THREADS` if set to a positive number, else the
/// machine's available parallelism.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// The pool, built on first use and shared by every caller (and every worker_thread
/// that loads the addon).
pub fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| {
        let n = std::env::var("ECLAT_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("eclat-{i}"))
            .build()
            .expect("building the eclat thread pool")
    })
}

/// Splits `n` items into chunks for parallel work: one chunk when `n` is small,
/// else about four chunks per thread and never smaller than the threshold.
pub fn chunk_len(n: usize) -> usize {
    if n < PARALLEL_THRESHOLD {
        return n.max(1);
    }
    let per = n.div_ceil(num_threads() * 4);
    per.max(PARALLEL_THRESHOLD / 2)
}
