// Steps `common/lu_solve` and `common/lu_solve_private` share (docs/math.md §7).

// Right-hand side column e: its matrix m, whose factors start at f; its column of x starts at xb and
// of b at bb (stride `p.columns` in both; a shared b, [n, r], is read by every matrix).
struct SolveColumn { m: u32, f: u32, xb: u32, bb: u32 }

fn solve_column(e: u32) -> SolveColumn {
    let m = e / p.columns;
    let xb = m * p.n * p.columns + e % p.columns;
    return SolveColumn(m, m * p.n * p.n, xb, select(xb, e % p.columns, p.shared_b != 0u));
}

// Apply matrix c.m's row swaps to its column of x, in the order the factorisation made them.
fn swap_rows(c: SolveColumn) {
    let r = p.columns;
    for (var row = 0u; row < p.n; row++) {
        let q = u32(pivots[c.m * p.n + row]);
        let t = x[c.xb + row * r];
        x[c.xb + row * r] = x[c.xb + q * r];
        x[c.xb + q * r] = t;
    }
}
