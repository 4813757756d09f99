//! Exact inference by enumerating all `2^N` spin configurations: the oracle for small graphs.

/// Most spins enumerated (2^24 configurations, well under a second).
pub const MAX_NODES: usize = 24;

/// `log Z` and `E[s_u s_v]` per edge by enumeration, in a log-sum-exp that cannot overflow. Spin 0 is
/// fixed to +1 and the sum doubled (the model is symmetric under a global flip).
pub fn infer(nodes: usize, edges: &[(usize, usize)], couplings: &[f64]) -> (f64, Vec<f64>) {
    assert!(nodes <= MAX_NODES, "brute force takes at most {MAX_NODES} spins");
    if nodes == 0 {
        return (0.0, Vec::new());
    }
    let energies = energies(nodes, edges, couplings);
    let top = energies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0;
    let mut moments = vec![0.0; edges.len()];
    for (config, &energy) in energies.iter().enumerate() {
        let weight = (energy - top).exp();
        total += weight;
        for (m, &(u, v)) in moments.iter_mut().zip(edges) {
            *m += weight * product(config, u, v);
        }
    }
    let log_z = std::f64::consts::LN_2 + top + total.ln();
    (log_z, moments.iter().map(|m| m / total).collect())
}

/// Probability of every configuration with spin 0 = +1 (bit i set: spin i = -1); the flipped
/// configuration has the same probability.
pub fn probabilities(nodes: usize, edges: &[(usize, usize)], couplings: &[f64]) -> Vec<f64> {
    assert!((1..=MAX_NODES).contains(&nodes), "brute force takes 1 to {MAX_NODES} spins");
    let energies = energies(nodes, edges, couplings);
    let top = energies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = energies.iter().map(|e| (e - top).exp()).collect();
    let total: f64 = weights.iter().sum::<f64>() * 2.0;
    weights.iter().map(|w| w / total).collect()
}

fn product(config: usize, u: usize, v: usize) -> f64 {
    // Bit i of `config << 1` is spin i's sign bit, spin 0 always +1.
    let c = config << 1;
    if ((c >> u) ^ (c >> v)) & 1 == 0 { 1.0 } else { -1.0 }
}

fn energies(nodes: usize, edges: &[(usize, usize)], couplings: &[f64]) -> Vec<f64> {
    (0..1usize << (nodes - 1))
        .map(|config| edges.iter().zip(couplings).map(|(&(u, v), &j)| j * product(config, u, v)).sum())
        .collect()
}
