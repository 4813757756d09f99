//! Las Vegas draws and the search for the smallest `d` (docs/math.md §9.4), written once for every
//! backend: an attempt builds `X` for a dimension, weights and draw and reports what the check saw.

use super::paper::construct;
use super::refine::{Adam, gradient};
use super::{Achieved, Expressed, Method, Pattern, Tolerances, check, weights};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A draw succeeds when the check meets the tolerances shrunk by this factor, so that an `X` checked
/// in f32 also passes a recomputation in f64.
pub const SAFETY: f64 = 0.999;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub tol: Tolerances,
    /// `None`: search for the smallest `d` that succeeds.
    pub dim: Option<usize>,
    /// Where the search starts (a guess of the answer, such as a neighbouring problem's).
    pub start_dim: usize,
    pub method: Method,
    pub seed: u64,
    /// Draws at a given `d` before giving up.
    pub max_tries: usize,
    /// Draws at each `d` the search tries.
    pub search_tries: usize,
    /// The largest `d` the search tries (`W_Q` and `W_K` hold `2 d^2` floats each).
    pub max_dim: usize,
    /// Adam steps of one draw of the refinement.
    pub max_iterations: usize,
    /// Adam steps without a 1% gain in the draw's score (see [`Progress`]) before it is abandoned.
    pub patience: usize,
    pub learning_rate: f64,
}

impl Options {
    pub fn new(tol: Tolerances) -> Options {
        Options {
            tol,
            dim: None,
            start_dim: 1,
            method: Method::Optimized,
            seed: 0,
            max_tries: 8,
            search_tries: 2,
            max_dim: 1024,
            max_iterations: 2000,
            patience: 200,
            learning_rate: 0.05,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.dim == Some(0) || self.max_dim == 0 || self.start_dim == 0 {
            return Err(Error::argument("dim", "d must be at least 1"));
        }
        if self.max_tries == 0 || self.search_tries == 0 {
            return Err(Error::argument("tries", "at least one draw is needed"));
        }
        if self.patience == 0 {
            return Err(Error::argument("patience", "at least one step is needed"));
        }
        Tolerances::new(self.tol.epsilon, self.tol.delta)?;
        Adam::new(self.learning_rate).map(|_| ())
    }

    /// The tolerances a draw must meet.
    pub fn target(&self) -> Tolerances {
        Tolerances { epsilon: self.tol.epsilon * SAFETY, delta: self.tol.delta * SAFETY }
    }

    /// How far `a` is from the target: `max(epsilon / epsilon_target, delta / delta_target)`, at most
    /// 1 when it meets it.
    pub fn score(&self, a: &Achieved) -> f64 {
        let t = self.target();
        (a.epsilon / t.epsilon).max(a.delta / t.delta)
    }
}

/// The refinement's stopping rule: a draw ends when it meets the target, when `max_iterations` steps
/// have run, or when `patience` steps have passed without its score improving by 1%.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    best: f64,
    best_at: usize,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { best: f64::INFINITY, best_at: 0 }
    }

    /// Whether to go on after the check at step `t` saw `achieved`.
    pub fn go_on(&mut self, options: &Options, t: usize, achieved: &Achieved) -> bool {
        let score = options.score(achieved);
        if score < 0.99 * self.best {
            (self.best, self.best_at) = (score, t);
        }
        score > 1.0 && t < options.max_iterations && t - self.best_at < options.patience
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// What one draw gave.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub x: Tensor<f64>,
    pub achieved: Achieved,
    pub iterations: usize,
}

/// The draws at one `d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub dim: usize,
    pub tries: usize,
    pub succeeded: bool,
    /// The best draw's result (by `max(epsilon / epsilon_tol, delta / delta_tol)`).
    pub best: Achieved,
}

#[derive(Debug, Clone)]
pub struct Search {
    pub expressed: Expressed,
    /// Every `d` tried, in order.
    pub trials: Vec<Trial>,
}

/// The seed of draw `t` (from 0): distinct from the weights' seed and from every other draw's.
pub fn draw_seed(seed: u64, t: usize) -> u64 {
    seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Runs `attempt(dim, wq, wk, draw)` over draws and dimensions: at `options.dim` up to `max_tries`
/// draws; without one, from `start_dim` halving `d` while a draw succeeds or doubling it until one
/// does, then bisecting between the largest failure and the smallest success, `search_tries` draws
/// each; `observe` sees each `d`'s trial as it ends. Past `max_tries` (or `max_dim`) the error
/// names the best result seen.
pub fn search(
    options: &Options,
    mut attempt: impl FnMut(usize, &Tensor<f64>, &Tensor<f64>, u64) -> Result<Attempt>,
    mut observe: impl FnMut(&Trial),
) -> Result<Search> {
    options.validate()?;
    let target = options.target();
    let mut trials = Vec::new();
    let mut at = |dim: usize, tries: usize| -> Result<Option<Expressed>> {
        let (wq, wk) = weights(dim, options.seed)?;
        let mut trial = Trial { dim, tries: 0, succeeded: false, best: Achieved { epsilon: f64::MAX, delta: 1.0 } };
        let mut found = None;
        for t in 0..tries {
            let got = attempt(dim, &wq, &wk, draw_seed(options.seed, t))?;
            trial.tries += 1;
            if options.score(&got.achieved) < options.score(&trial.best) {
                trial.best = got.achieved;
            }
            if got.achieved.meets(target) {
                trial.succeeded = true;
                let (achieved, iterations) = (got.achieved, got.iterations);
                found = Some(Expressed { x: got.x, wq, wk, dim, achieved, tries: t + 1, iterations });
                break;
            }
        }
        observe(&trial);
        trials.push(trial);
        Ok(found)
    };
    let failure = |trials: &[Trial], what: String| {
        let best =
            trials.iter().map(|t| t.best).min_by(|a, b| a.epsilon.max(a.delta).total_cmp(&b.epsilon.max(b.delta)));
        let best = best.unwrap_or_default();
        Error::argument(
            "express",
            format!(
                "{what} met epsilon = {} and delta = {} (the closest reached epsilon = {:.4}, delta = {:.4}); \
                 allow a larger d, more tries or more iterations",
                options.tol.epsilon, options.tol.delta, best.epsilon, best.delta
            ),
        )
    };
    if let Some(dim) = options.dim {
        return match at(dim, options.max_tries)? {
            Some(expressed) => Ok(Search { expressed, trials }),
            None => Err(failure(&trials, format!("no draw of {} at d = {dim}", options.max_tries))),
        };
    }
    let mut dim = options.start_dim.min(options.max_dim);
    let (mut lo, mut best) = (0, None);
    // Bracket the answer: `lo` failed (0: none needed), `best` succeeded.
    while best.is_none() || (lo == 0 && dim > 1) {
        match (at(dim, options.search_tries)?, &best) {
            (Some(found), _) => {
                best = Some(found);
                dim /= 2;
            }
            (None, Some(_)) => lo = dim,
            (None, None) if dim >= options.max_dim => {
                let what = format!("no d up to {} ({} draws each)", options.max_dim, options.search_tries);
                return Err(failure(&trials, what));
            }
            (None, None) => {
                lo = dim;
                dim = (2 * dim).min(options.max_dim);
            }
        }
    }
    let mut best = best.expect("the loop ends with a success");
    while best.dim - lo > 1 {
        let mid = (lo + best.dim) / 2;
        match at(mid, options.search_tries)? {
            Some(found) => best = found,
            None => lo = mid,
        }
    }
    Ok(Search { expressed: best, trials })
}

/// One draw on the CPU: the paper's `X`, then (optimized) Adam until the check meets `target` or
/// `max_iterations` steps have run.
pub fn attempt(pattern: &Pattern, options: &Options, wq: &Tensor<f64>, wk: &Tensor<f64>, draw: u64) -> Result<Attempt> {
    let mut x = construct(pattern, options.tol, wq, wk, draw);
    let worst = |stats: &Tensor<f64>| Achieved::worst(stats.data().chunks(2).map(|r| [r[0], r[1]]));
    if options.method == Method::Paper {
        let achieved = worst(&check(pattern, &x, wq, wk)?);
        return Ok(Attempt { x, achieved, iterations: 0 });
    }
    let adam = Adam::new(options.learning_rate)?;
    let (mut m, mut v) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let mut progress = Progress::new();
    for t in 0.. {
        let (dx, stats) = gradient(pattern, &x, wq, wk, options.tol.delta)?;
        let achieved = worst(&stats);
        if !progress.go_on(options, t, &achieved) {
            return Ok(Attempt { x, achieved, iterations: t });
        }
        adam.step(t + 1, x.data_mut(), dx.data(), &mut m, &mut v);
    }
    unreachable!("the loop ends through the stopping rule")
}

/// [`search`] on the CPU.
pub fn express(pattern: &Pattern, options: &Options, observe: impl FnMut(&Trial)) -> Result<Search> {
    search(options, |_, wq, wk, draw| attempt(pattern, options, wq, wk, draw), observe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Gaussian;

    #[test]
    fn the_search_finds_a_small_dimension_that_passes() {
        let len = 48;
        let mut g = Gaussian::new(9);
        // Two nonzeros per row, in a band, values across a decade.
        let a = Tensor::from_fn(&[len, len], |e| {
            let (i, j) = (e / len, e % len);
            if j == (i + 5) % len || j == (i * 7 + 1) % len { 0.1 + 0.9 * g.uniform() } else { 0.0 }
        });
        let pattern = Pattern::from_dense(&a).unwrap();
        let tol = Tolerances::new(0.5, 0.05).unwrap();
        let found = express(&pattern, &Options::new(tol), |_| {}).unwrap();
        let e = &found.expressed;
        // From above the answer the search halves down to it.
        let again = express(&pattern, &Options { start_dim: 4 * e.dim, ..Options::new(tol) }, |_| {}).unwrap();
        assert_eq!(again.expressed.dim, e.dim);
        assert!(again.trials[0].dim == 4 * e.dim && again.trials[0].succeeded, "{:?}", again.trials);
        let rows = check(&pattern, &e.x, &e.wq, &e.wk).unwrap();
        assert!(
            Achieved::worst(rows.data().chunks(2).map(|r| [r[0], r[1]])).meets(Tolerances::new(0.5, 0.05).unwrap())
        );
        assert!(e.dim < len / 4, "d = {}", e.dim);
        // Every d below the answer failed in the search.
        assert!(found.trials.iter().all(|t| t.succeeded == (t.dim >= e.dim)), "{:?}", found.trials);
    }
}
