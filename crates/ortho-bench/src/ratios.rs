//! The ratios a sweep is run for, taken between records of the same run: FAVOR+ against exact
//! attention per L, CWY against sequential Householder per N, each kernel's GFLOP/s against the
//! GEMM's on its adapter, each GPU backend against the CPU fallback.

use crate::report::Record;
use serde::{Deserialize, Serialize};

/// One ratio of two figures measured in the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// What is compared (one of [`KINDS`]).
    pub kind: String,
    pub backend: String,
    /// Where it is taken: `L=4096`, `N=256`, or a case's name.
    pub at: String,
    pub value: f64,
}

/// The kinds of ratio, in the order the report shows them.
pub const KINDS: [&str; 5] = [
    "FAVOR+ time / exact attention time, bidirectional",
    "FAVOR+ time (fastest causal setting) / exact attention time, causal",
    "CWY time / sequential Householder time",
    "GFLOP/s / the GEMM's GFLOP/s on the same adapter",
    "CPU fallback time / device time",
];

/// The device time of a record that ran and passed.
fn time(r: &Record) -> Option<f64> {
    (r.pass && r.device_median_s > 0.0).then_some(r.device_median_s)
}

/// Every ratio the records allow.
pub fn ratios(records: &[Record]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut push = |kind: usize, r: &Record, at: String, value: f64| {
        if value.is_finite() {
            out.push(Ratio { kind: KINDS[kind].into(), backend: r.backend.clone(), at, value });
        }
    };
    let find = |backend: &str, family: &str, case: &str| {
        records.iter().find(|r| r.backend == backend && r.family == family && r.case == case).and_then(time)
    };
    for r in records {
        let Some(t) = time(r) else { continue };
        match r.family.as_str() {
            "exact" => {
                let l = r.size;
                if let Some(favor) = find(&r.backend, "favor", &format!("favor+ L={l}")) {
                    push(0, r, format!("L={l}"), favor / t);
                }
            }
            "exact-causal" => {
                let fastest = records
                    .iter()
                    .filter(|c| c.backend == r.backend && c.family == "favor-causal" && c.size == r.size)
                    .filter(|c| c.case.starts_with("favor+ "))
                    .filter_map(time)
                    .reduce(f64::min);
                if let Some(favor) = fastest {
                    push(1, r, format!("L={}", r.size), favor / t);
                }
            }
            "householder" => {
                if let Some(cwy) = find(&r.backend, "cwy", &format!("cwy L=N N={}", r.size)) {
                    push(2, r, format!("N={}", r.size), cwy / t);
                }
            }
            _ => {}
        }
    }
    for r in records.iter().filter(|r| r.family != "gemm" && time(r).is_some()) {
        let ceiling = records
            .iter()
            .filter(|g| g.backend == r.backend && g.family == "gemm" && time(g).is_some())
            .map(|g| g.gflops)
            .reduce(f64::max);
        if let Some(ceiling) = ceiling {
            push(3, r, r.case.clone(), r.gflops / ceiling);
        }
    }
    for r in records.iter().filter(|r| r.backend != "cpu") {
        if let (Some(t), Some(cpu)) = (time(r), find("cpu", &r.family, &r.case)) {
            push(4, r, r.case.clone(), cpu / t);
        }
    }
    out
}

/// The ratios of each of `kinds` as a Markdown table: a row per place, a column per backend.
pub fn markdown(ratios: &[Ratio], kinds: &[&str]) -> String {
    let mut out = String::new();
    for &kind in kinds {
        let of_kind: Vec<&Ratio> = ratios.iter().filter(|r| r.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let backends = distinct(of_kind.iter().map(|r| r.backend.as_str()));
        let rows = distinct(of_kind.iter().map(|r| r.at.as_str()));
        out += &format!("### {kind}\n\n| | {} |\n|---{}|\n", backends.join(" | "), "|---".repeat(backends.len()));
        for at in rows {
            let cells: Vec<String> = backends
                .iter()
                .map(|b| {
                    of_kind.iter().find(|r| r.at == at && r.backend == *b).map_or(String::new(), |r| ratio(r.value))
                })
                .collect();
            out += &format!("| {at} | {} |\n", cells.join(" | "));
        }
        out += "\n";
    }
    out
}

/// `0.0123x`, `0.52x`, `14.3x`: three significant figures.
fn ratio(v: f64) -> String {
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}x")
}

/// The distinct items in their first order.
pub(crate) fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use crate::report::fixtures::record;

    /// Each kind from the records it names, on each backend; none from a record that failed.
    #[test]
    fn ratios_pair_the_records_they_name() {
        let mut failed = record("gl", "exact", "exact L=64", 64, 1.0, 1.0);
        failed.pass = false;
        let records = vec![
            record("vulkan", "gemm", "gemm n=8", 8, 1.0, 10.0),
            record("vulkan", "gemm", "gemm n=16", 16, 1.0, 20.0),
            record("vulkan", "favor", "favor+ L=64", 64, 1.0, 5.0),
            record("vulkan", "favor", "favor-trig L=64", 64, 9.0, 5.0),
            record("vulkan", "exact", "exact L=64", 64, 4.0, 2.0),
            record("vulkan", "favor-causal", "favor+ parallel C=8 L=64", 64, 3.0, 1.0),
            record("vulkan", "favor-causal", "favor+ sequential C=8 L=64", 64, 2.0, 1.0),
            record("vulkan", "favor-causal", "favor-trig parallel C=8 L=64", 64, 0.5, 1.0),
            record("vulkan", "exact-causal", "exact causal L=64", 64, 8.0, 1.0),
            record("vulkan", "cwy", "cwy L=N N=32", 32, 1.0, 1.0),
            record("vulkan", "householder", "sequential householder L=N N=32", 32, 5.0, 1.0),
            record("gl", "favor", "favor+ L=64", 64, 1.0, 1.0),
            failed,
            record("cpu", "favor", "favor+ L=64", 64, 3.0, 1.0),
        ];
        let all = super::ratios(&records);
        let of = |kind: usize, backend: &str, at: &str| {
            let found = all.iter().filter(|r| r.kind == super::KINDS[kind] && r.backend == backend && r.at == at);
            found.map(|r| r.value).collect::<Vec<_>>()
        };
        assert_eq!(of(0, "vulkan", "L=64"), [0.25]);
        assert!(of(0, "gl", "L=64").is_empty());
        // The fastest FAVOR+ setting; the trig features are another kernel.
        assert_eq!(of(1, "vulkan", "L=64"), [0.25]);
        assert_eq!(of(2, "vulkan", "N=32"), [0.2]);
        assert_eq!(of(3, "vulkan", "favor+ L=64"), [0.25]);
        assert!(of(3, "gl", "favor+ L=64").is_empty(), "no GEMM on gl");
        assert_eq!(of(4, "vulkan", "favor+ L=64"), [3.0]);
        assert_eq!(of(4, "gl", "favor+ L=64"), [3.0]);
        assert!(of(4, "cpu", "favor+ L=64").is_empty());
        let table = super::markdown(&all, &super::KINDS);
        assert!(
            table.contains("### CWY time / sequential Householder time\n\n| | vulkan |\n|---|---|\n| N=32 | 0.200x |"),
            "{table}"
        );
    }

    #[test]
    fn ratios_keep_three_figures() {
        assert_eq!(super::ratio(0.012345), "0.0123x");
        assert_eq!(super::ratio(0.5), "0.500x");
        assert_eq!(super::ratio(14.26), "14.3x");
        assert_eq!(super::ratio(1234.0), "1234x");
    }
}
