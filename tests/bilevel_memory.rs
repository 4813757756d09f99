//! The exact outer gradient by recomputation keeps memory flat in the inner loop's length, where
//! backpropagation stores every iterate (docs/math.md §8): peak heap measured by a counting
//! allocator (this binary holds one test, so nothing else allocates meanwhile).

use ortho_ref::bilevel::{self, InnerLoop, Quadratic};
use ortho_ref::heap::{Counting, peak_bytes};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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
