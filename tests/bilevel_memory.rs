//! The exact outer gradient by recomputation keeps memory flat in the inner loop's length, where
//! backpropagation stores every iterate (docs/math.md §8): peak heap measured by a counting
//! allocator (this binary holds one test, so nothing else allocates meanwhile).

use ortho_ref::bilevel::{self, InnerLoop, Quadratic};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes above what was live when `f` started, at its peak.
fn peak_bytes(f: impl FnOnce() -> Vec<f64>) -> usize {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    std::hint::black_box(f());
    PEAK.load(Ordering::SeqCst) - base
}

#[test]
fn recomputation_memory_is_flat_in_r_and_backpropagation_grows() {
    let n = 64;
    let a: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
    let task = Quadratic::new("task", n, a.clone(), vec![1.0; n], a, vec![0.0; n]).unwrap();
    let theta = vec![0.5; n];
    let mut rows = Vec::new();
    for steps in [10, 100, 1000] {
        let inner = InnerLoop { steps, lr: 0.01 };
        let exact = peak_bytes(|| bilevel::exact(&task, &theta, inner));
        let o1 = peak_bytes(|| bilevel::exact_o1(&task, &theta, inner));
        rows.push((steps, exact, o1));
    }
    println!("r, peak bytes of exact (backpropagation), of exact-o1 (recomputation): {rows:?}");
    let (small, large) = (rows[0], rows[2]);
    assert!(large.1 > 50 * small.1, "backpropagation stores the iterates: {rows:?}");
    assert_eq!(small.2, large.2, "recomputation does not grow with r: {rows:?}");
}
