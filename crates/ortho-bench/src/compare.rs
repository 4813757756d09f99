//! Two reports side by side (`ortho bench --compare A.json B.json`): the device time of every case
//! both ran, B over A, marked where the two runs' ranges of repeats do not overlap.

use crate::report::{Record, Report, seconds};

/// How a case's time moved from report A to report B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// B's fastest repeat is slower than A's slowest.
    Slower,
    /// B's slowest repeat is faster than A's fastest.
    Faster,
    /// The ranges of repeats overlap.
    WithinSpread,
}

/// One case both reports ran.
#[derive(Debug, Clone)]
pub struct Change {
    pub backend: String,
    pub case: String,
    pub before_s: f64,
    pub after_s: f64,
    pub verdict: Verdict,
}

/// The fastest and slowest repeats of a record, in seconds.
fn range(r: &Record) -> (f64, f64) {
    (r.device_median_s * r.device_fastest, r.device_median_s * r.device_slowest)
}

/// Every case that ran in both (matched by backend and case), in B's order; and the count of cases
/// only one of them ran.
pub fn compare(a: &Report, b: &Report) -> (Vec<Change>, usize) {
    let ran = |r: &&Record| r.failure.is_none() && r.device_median_s > 0.0;
    let mut changes = Vec::new();
    for after in b.records.iter().filter(ran) {
        let Some(before) = a.records.iter().filter(ran).find(|r| r.backend == after.backend && r.case == after.case)
        else {
            continue;
        };
        let ((a_lo, a_hi), (b_lo, b_hi)) = (range(before), range(after));
        let verdict = if b_lo > a_hi {
            Verdict::Slower
        } else if b_hi < a_lo {
            Verdict::Faster
        } else {
            Verdict::WithinSpread
        };
        changes.push(Change {
            backend: after.backend.clone(),
            case: after.case.clone(),
            before_s: before.device_median_s,
            after_s: after.device_median_s,
            verdict,
        });
    }
    let unmatched = a.records.len() + b.records.len() - 2 * changes.len();
    (changes, unmatched)
}

/// The comparison as a table, one line per case, and a summary line.
pub fn table(a: &Report, b: &Report) -> String {
    let (changes, unmatched) = compare(a, b);
    let describe =
        |r: &Report| format!("{} {}", r.git_commit.as_deref().map_or("?", |c| &c[..c.len().min(12)]), r.date);
    let mut out = format!("A: {}\nB: {}\n", describe(a), describe(b));
    out += &format!("{:<8} {:<48} {:>10} {:>10} {:>7}  change\n", "backend", "case", "A", "B", "B/A");
    for c in &changes {
        let mark = match c.verdict {
            Verdict::Slower => "SLOWER",
            Verdict::Faster => "faster",
            Verdict::WithinSpread => "",
        };
        out += &format!(
            "{:<8} {:<48} {:>10} {:>10} {:>6.2}x  {mark}\n",
            c.backend,
            c.case,
            seconds(c.before_s),
            seconds(c.after_s),
            c.after_s / c.before_s
        );
    }
    let count = |v| changes.iter().filter(|c| c.verdict == v).count();
    out += &format!(
        "{} cases in both: {} slower and {} faster beyond the spread of their repeats; {unmatched} records in only one \
         report or not run\n",
        changes.len(),
        count(Verdict::Slower),
        count(Verdict::Faster)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::Verdict;
    use crate::report::Report;
    use crate::report::fixtures::record;

    /// Changes beyond the spread of the repeats are marked; those within it, and cases only one report
    /// ran, are not.
    #[test]
    fn changes_beyond_the_spread_are_marked() {
        let before = Report::new(
            vec![
                record("vulkan", "gemm", "a", 1, 1.0, 1.0),
                record("vulkan", "gemm", "b", 1, 1.0, 1.0),
                record("vulkan", "gemm", "c", 1, 1.0, 1.0),
                record("vulkan", "gemm", "gone", 1, 1.0, 1.0),
            ],
            "ortho bench".into(),
        );
        let after = Report::new(
            vec![
                // Repeats 0.9-1.1 of the median: 1.3 s is past 1.1 s, 0.7 s below 0.9 s, 1.15 s overlaps.
                record("vulkan", "gemm", "a", 1, 1.3, 1.0),
                record("vulkan", "gemm", "b", 1, 0.7, 1.0),
                record("vulkan", "gemm", "c", 1, 1.15, 1.0),
                record("gl", "gemm", "a", 1, 1.0, 1.0),
            ],
            "ortho bench".into(),
        );
        let (changes, unmatched) = super::compare(&before, &after);
        let verdicts: Vec<(&str, Verdict)> = changes.iter().map(|c| (c.case.as_str(), c.verdict)).collect();
        assert_eq!(verdicts, [("a", Verdict::Slower), ("b", Verdict::Faster), ("c", Verdict::WithinSpread)]);
        assert_eq!(unmatched, 2);
        let table = super::table(&before, &after);
        assert!(table.contains("1.30x  SLOWER") && table.contains("0.70x  faster"), "{table}");
        assert!(table.contains("3 cases in both: 1 slower and 1 faster"), "{table}");
    }
}
