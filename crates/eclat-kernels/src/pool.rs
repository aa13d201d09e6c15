//! The private thread pool every kernel runs on.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// How long a caller outside the pool polls for its job before sleeping.
const POLL: Duration = Duration::from_micros(50);

/// Runs `f` on the pool (its parallel iterators use the pool's threads) and
/// returns its result; panics in `f` resume on the caller.
///
/// Like `ThreadPool::install`, except in how the caller waits: `install`
/// blocks it on a condition variable at once, and waking a blocked thread
/// costs 15-30 µs on a virtual machine (its CPU halts, and a wake-up is an
/// interprocessor interrupt), more than a medium-sized kernel takes. The
/// caller here polls for [`POLL`], yielding its CPU at each poll so that it
/// never holds back a worker, and only then sleeps.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = pool();
    if pool.current_thread_index().is_some() {
        return f();
    }
    // The result comes back through a channel: after its send, the job
    // touches nothing on the caller's stack, which is gone once it is received.
    let (send, receive) = mpsc::sync_channel(1);
    let job = move || {
        // The caller is waiting until it receives, so the send cannot fail.
        let _ = send.send(catch_unwind(AssertUnwindSafe(f)));
    };
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
    // SAFETY: only `f` borrows from the caller, and `f` has returned (its
    // borrows ended) before the job sends; the caller does not return or
    // unwind (nothing below panics) until it has received.
    let job = unsafe { std::mem::transmute::<_, Box<dyn FnOnce() + Send + 'static>>(job) };
    pool.spawn(job);
    let start = Instant::now();
    let result = loop {
        match receive.try_recv() {
            Ok(result) => break result,
            Err(TryRecvError::Empty) if start.elapsed() < POLL => std::thread::yield_now(),
            Err(_) => break receive.recv().expect("the job sends its result"),
        }
    };
    match result {
        Ok(r) => r,
        Err(panic) => resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn run_returns_results_and_resumes_panics() {
        let data: Vec<u64> = (0..100_000).collect();
        // Borrowed data, parallel work inside, from outside and inside the pool.
        assert_eq!(run(|| data.par_iter().sum::<u64>()), 4_999_950_000);
        assert_eq!(run(|| run(|| data.len())), 100_000);
        // A job long enough that the caller sleeps before it ends.
        let slow = run(|| {
            std::thread::sleep(Duration::from_millis(5));
            7
        });
        assert_eq!(slow, 7);
        let panicked = catch_unwind(|| run(|| -> u32 { panic!("kernel bug") }));
        let message = panicked.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"kernel bug"));
        // The pool still works after a job panicked.
        assert_eq!(run(|| 1 + 1), 2);
    }
}
