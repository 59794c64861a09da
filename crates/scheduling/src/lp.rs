//! A small dense linear-programming solver (primal simplex on a condensed tableau) for the
//! cost-aware re-pack and for benchmark lower bounds. Pure and deterministic; no dependencies.
//!
//! It solves `max c·z  s.t.  A z ≤ b,  z ≥ 0` with `b ≥ 0`, so the origin is feasible and no
//! phase 1 is needed. Both of our uses fit that shape: the re-pack's "shadow price" problem
//! (per-pod values `u` against per-type resource prices `v`) is exactly the dual of "cover the
//! pods with fractional nodes at least cost", and its own dual (returned in
//! [`LpSolution::dual`]) is that covering problem's solution.

/// Pivot tolerance: entries smaller than this are treated as zero.
const EPS: f64 = 1e-9;

/// Degenerate pivots in a row before switching from Dantzig's rule to Bland's (which cannot
/// cycle) until the objective moves again.
const DEGENERATE_STREAK: usize = 50;

/// An optimal solution of [`maximize`].
#[derive(Debug, Clone, PartialEq)]
pub struct LpSolution {
    /// Optimal objective `c·z`.
    pub value: f64,
    /// Optimal `z` (one entry per column).
    pub primal: Vec<f64>,
    /// Optimal dual `w ≥ 0` (one entry per row): `min b·w  s.t.  Aᵀw ≥ c`.
    pub dual: Vec<f64>,
}

/// Maximises `c·z` subject to `A z ≤ b`, `z ≥ 0`, where `a` is `rows × c.len()` row-major and
/// every `b` is ≥ 0. `None` when the problem is unbounded, the input is malformed, or no
/// optimum was reached within `max_pivots` pivots.
pub fn maximize(a: &[f64], b: &[f64], c: &[f64], max_pivots: usize) -> Option<LpSolution> {
    let (m, n) = (b.len(), c.len());
    if a.len() != m * n || b.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
        return None;
    }
    let w = n + 1;
    // Rows 0..m: [A | b]; row m: [-c | objective].
    let mut t = vec![0f64; (m + 1) * w];
    for i in 0..m {
        let (src, dst) = (a.get(i * n..(i + 1) * n)?, t.get_mut(i * w..(i + 1) * w)?);
        dst.get_mut(..n)?.copy_from_slice(src);
        *dst.get_mut(n)? = *b.get(i)?;
    }
    for (j, cj) in c.iter().enumerate() {
        *t.get_mut(m * w + j)? = -cj;
    }
    // Variable ids: 0..n are the columns' z, n..n+m the rows' slacks.
    let mut row_var: Vec<usize> = (n..n + m).collect();
    let mut col_var: Vec<usize> = (0..n).collect();
    let mut streak = 0usize;
    let mut pivot_row = vec![0f64; w];
    for _ in 0..max_pivots {
        let obj = t.get(m * w..m * w + n)?;
        let entering = if streak >= DEGENERATE_STREAK {
            (0..n)
                .filter(|&j| obj.get(j).is_some_and(|v| *v < -EPS))
                .min_by_key(|&j| col_var.get(j).copied().unwrap_or(usize::MAX))
        } else {
            (0..n)
                .filter(|&j| obj.get(j).is_some_and(|v| *v < -EPS))
                .min_by(|&x, &y| {
                    obj.get(x)
                        .copied()
                        .unwrap_or(0.0)
                        .total_cmp(&obj.get(y).copied().unwrap_or(0.0))
                })
        };
        let Some(s) = entering else {
            return extract(&t, m, n, &row_var, &col_var);
        };
        // Ratio test; ties go to the smallest variable id (Bland), which keeps it finite.
        let mut leave: Option<(usize, f64)> = None;
        for i in 0..m {
            let ais = *t.get(i * w + s)?;
            if ais <= EPS {
                continue;
            }
            let ratio = *t.get(i * w + n)? / ais;
            leave = match leave {
                None => Some((i, ratio)),
                Some((r, best)) => {
                    let tie = (ratio - best).abs() <= 1e-12 * best.abs().max(1.0);
                    if (tie && row_var.get(i) < row_var.get(r)) || (!tie && ratio < best) {
                        Some((i, ratio))
                    } else {
                        Some((r, best))
                    }
                }
            };
        }
        let (r, ratio) = leave?;
        streak = if ratio <= EPS { streak + 1 } else { 0 };
        pivot(&mut t, &mut pivot_row, w, m, r, s)?;
        if let (Some(rv), Some(cv)) = (row_var.get_mut(r), col_var.get_mut(s)) {
            std::mem::swap(rv, cv);
        }
    }
    None
}

/// Exchanges the basic variable of row `r` with the non-basic variable of column `s`.
fn pivot(t: &mut [f64], pr: &mut [f64], w: usize, m: usize, r: usize, s: usize) -> Option<()> {
    let p = *t.get(r * w + s)?;
    let row = t.get_mut(r * w..(r + 1) * w)?;
    for (dst, src) in pr.iter_mut().zip(row.iter_mut()) {
        *src /= p;
        *dst = *src;
    }
    *row.get_mut(s)? = 1.0 / p;
    if let Some(x) = pr.get_mut(s) {
        // The pivot column is rewritten below; its entry in the scaled row is not used.
        *x = 0.0;
    }
    for i in 0..=m {
        if i == r {
            continue;
        }
        let row = t.get_mut(i * w..(i + 1) * w)?;
        let f = *row.get(s)?;
        if f == 0.0 {
            continue;
        }
        for (x, y) in row.iter_mut().zip(pr.iter()) {
            *x -= f * y;
        }
        *row.get_mut(s)? = -f / p;
    }
    Some(())
}

fn extract(
    t: &[f64],
    m: usize,
    n: usize,
    row_var: &[usize],
    col_var: &[usize],
) -> Option<LpSolution> {
    let w = n + 1;
    let mut primal = vec![0f64; n];
    for (i, &v) in row_var.iter().enumerate() {
        if v < n
            && let Some(z) = primal.get_mut(v)
        {
            *z = t.get(i * w + n)?.max(0.0);
        }
    }
    let mut dual = vec![0f64; m];
    for (j, &v) in col_var.iter().enumerate() {
        if v >= n
            && let Some(d) = dual.get_mut(v - n)
        {
            *d = t.get(m * w + j)?.max(0.0);
        }
    }
    Some(LpSolution {
        value: *t.get(m * w + n)?,
        primal,
        dual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &[&[f64]], b: &[f64], c: &[f64], value: Option<f64>) {
        let flat: Vec<f64> = a.iter().flat_map(|r| r.iter().copied()).collect();
        let got = maximize(&flat, b, c, 1000);
        match (got, value) {
            (None, None) => {}
            (Some(s), Some(v)) => {
                assert!((s.value - v).abs() < 1e-7, "value {} != {v}", s.value);
                // Primal feasibility and strong duality.
                for (row, bi) in a.iter().zip(b) {
                    let lhs: f64 = row.iter().zip(&s.primal).map(|(x, y)| x * y).sum();
                    assert!(lhs <= bi + 1e-7, "row violated: {lhs} > {bi}");
                }
                let dual_value: f64 = s.dual.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!((dual_value - v).abs() < 1e-7, "dual {dual_value} != {v}");
                for (j, cj) in c.iter().enumerate() {
                    let lhs: f64 = a.iter().zip(&s.dual).map(|(r, d)| r[j] * d).sum();
                    assert!(lhs >= cj - 1e-7, "dual row {j} violated: {lhs} < {cj}");
                }
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn textbook_optimum() {
        // max 3x + 5y, x ≤ 4, 2y ≤ 12, 3x + 2y ≤ 18 → (2, 6), 36.
        check(
            &[&[1.0, 0.0], &[0.0, 2.0], &[3.0, 2.0]],
            &[4.0, 12.0, 18.0],
            &[3.0, 5.0],
            Some(36.0),
        );
    }

    #[test]
    fn degenerate_rows() {
        // Zero right-hand sides everywhere but one (the re-pack's shape).
        check(
            &[&[1.0, -1.0, 0.0], &[1.0, 0.0, -1.0], &[0.0, 2.0, 1.0]],
            &[0.0, 0.0, 6.0],
            &[1.0, 0.0, 0.0],
            Some(2.0),
        );
    }

    #[test]
    fn unbounded_and_malformed() {
        check(&[&[1.0, -1.0]], &[1.0], &[0.0, 1.0], None);
        check(&[&[1.0]], &[-1.0], &[1.0], None);
        assert!(maximize(&[1.0, 2.0], &[1.0], &[1.0], 10).is_none());
    }

    #[test]
    fn zero_objective_is_origin() {
        check(&[&[1.0, 1.0]], &[3.0], &[0.0, 0.0], Some(0.0));
    }
}
