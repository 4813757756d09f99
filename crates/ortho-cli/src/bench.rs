//! `ortho bench`: the sweep of `ortho-bench` on every adapter and on the CPU fallback, a table on the
//! terminal as it runs, and `results.json` and `report.md` in the output folder; failure if any case
//! misses its error bound or cannot run.

use crate::validate::engines;
use clap::Args;
use ortho::{BackendChoice, MeasureOptions};
use ortho_bench::{Record, Report, Sweep, sweep};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// One small size per family (a couple of minutes on a software adapter) instead of the full sweep.
    #[arg(long)]
    quick: bool,
    /// Only the cases whose `family/case` name matches this regular expression.
    #[arg(long)]
    filter: Option<String>,
    /// auto (every adapter, then the CPU fallback), vulkan, gl, metal, dx12 or cpu.
    #[arg(long, value_parser = crate::parse_backend)]
    backend: Option<BackendChoice>,
    /// Where to write results.json and report.md.
    #[arg(long, default_value = "ortho-report")]
    out: PathBuf,
    /// Timed runs of each case (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Multiplies every case's error bound (below 1 to make validation stricter).
    #[arg(long, default_value_t = 1.0, hide = true)]
    bound_scale: f64,
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    if a.repeats == 0 {
        return Err("--repeats: at least 1 timed run".into());
    }
    let filter = a.filter.as_deref().map(regex::Regex::new).transpose().map_err(|e| format!("--filter: {e}"))?;
    let mut cases = sweep(if a.quick { Sweep::Quick } else { Sweep::Full });
    cases.retain(|c| filter.as_ref().is_none_or(|f| f.is_match(&format!("{}/{}", c.family, c.name))));
    for case in &mut cases {
        case.bound *= a.bound_scale;
    }
    if cases.is_empty() {
        return Err("--filter matches no case".into());
    }
    let engines = engines(a.backend)?;
    let total = engines.len() * cases.len();
    let o = MeasureOptions { warmup: 1, repeats: a.repeats };
    println!(
        "{:<8} {:<44} {:>10} {:>10} {:>9} {:>9} {:>9} result",
        "backend", "case", "device", "call", "GFLOP/s", "GB/s", "error"
    );
    let (start, mut records) = (Instant::now(), Vec::with_capacity(total));
    for engine in &engines {
        for case in &cases {
            let r = Record::of(case, engine, case.run(engine, o));
            let done = records.len() + 1;
            let left = start.elapsed().as_secs_f64() / done as f64 * (total - done) as f64;
            println!("{} [{done}/{total}, ~{left:.0} s left]", row(&r));
            records.push(r);
        }
    }
    let report = Report::new(records);
    report.write(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    println!("report: {}", a.out.display());
    match report.failures().as_slice() {
        [] => Ok(()),
        failed => {
            for r in failed {
                eprintln!("ortho bench: {} {}: {}", r.backend, r.case, verdict(r));
            }
            Err(format!("{} of {total} cases failed", failed.len()))
        }
    }
}

fn verdict(r: &Record) -> String {
    match (&r.failure, r.pass) {
        (Some(e), _) => format!("FAIL: {e}"),
        (None, true) => "pass".into(),
        (None, false) => format!("FAIL: error {:.2e} over the bound {:.0e}", r.error, r.bound),
    }
}

fn row(r: &Record) -> String {
    let s = ortho_bench::report::seconds;
    format!(
        "{:<8} {:<44} {:>10} {:>10} {:>9.2} {:>9.2} {:>9.1e} {}",
        r.backend,
        r.case,
        s(r.device_median_s),
        s(r.call_median_s),
        r.gflops,
        r.gbps,
        r.error,
        verdict(r)
    )
}
