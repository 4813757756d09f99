//! `ortho bench`: the sweep of `ortho-bench` on every adapter and on the CPU fallback, a table on the
//! terminal and a progress bar as it runs, and `results.json`, `report.md` and the plots in the output
//! folder; failure if any case misses its error bound or cannot run. `--compare A.json B.json` sets
//! two reports side by side instead.

use crate::validate::engines;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ortho::{BackendChoice, DType, MeasureOptions};
use ortho_bench::{Record, Report, Sweep, sweep};
use std::path::{Path, PathBuf};

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
    /// Where to write results.json, report.md and the plots.
    #[arg(long, default_value = "ortho-report")]
    out: PathBuf,
    /// Timed runs of each case, of its device work and of the whole call each.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Print the per-case ratios of report B to report A (two results.json) and run nothing.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["quick", "filter", "backend", "repeats"])]
    compare: Option<Vec<PathBuf>>,
    /// Also write the report into this Markdown file (repeatable): between `<!-- ortho bench -->` and
    /// `<!-- end ortho bench -->` all of it, between `<!-- ortho bench headline -->` and
    /// `<!-- end ortho bench headline -->` its headline ratios (how BENCHMARKS.md and the README are
    /// written).
    #[arg(long, value_name = "FILE")]
    splice: Vec<PathBuf>,
    /// Storage of every case's inputs and outputs: f32, or f16 (inputs rounded to f16, the
    /// conversions timed with the work, each bound widened by the output rounding, 2^-11).
    #[arg(long, default_value = "f32", value_parser = |s: &str| s.parse::<DType>().map_err(|e| e.to_string()))]
    dtype: DType,
    /// Multiplies every case's error bound (below 1 to make validation stricter).
    #[arg(long, default_value_t = 1.0, hide = true)]
    bound_scale: f64,
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    if let Some([before, after]) = a.compare.as_deref() {
        print!("{}", ortho_bench::compare::table(&read_report(before)?, &read_report(after)?));
        return Ok(());
    }
    if a.repeats == 0 {
        return Err("--repeats: at least 1 timed run".into());
    }
    let filter = a.filter.as_deref().map(regex::Regex::new).transpose().map_err(|e| format!("--filter: {e}"))?;
    let mut cases = sweep(if a.quick { Sweep::Quick } else { Sweep::Full });
    cases.retain(|c| filter.as_ref().is_none_or(|f| f.is_match(&c.path())));
    for case in &mut cases {
        case.bound *= a.bound_scale;
        if a.dtype == DType::F16 {
            case.bound += ortho_bench::inputs::F16_ROUNDING;
            case.bytes /= 2.0;
        }
    }
    if cases.is_empty() {
        return Err("--filter matches no case".into());
    }
    let engines = engines(a.backend)?;
    let total = engines.len() * cases.len();
    // The checked call and the timed calls before the device repeats compile the pipelines and fill
    // the pool: they are the warm-up.
    let o = MeasureOptions { warmup: 0, repeats: a.repeats, dtype: a.dtype };
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed} elapsed, ~{eta} left] {msg}")
            .expect("a valid template"),
    );
    println!(
        "{:<8} {:<48} {:>10} {:>10} {:>9} {:>9} {:>9} result",
        "backend", "case", "device", "call", "GFLOP/s", "GB/s", "error"
    );
    let mut records = Vec::with_capacity(total);
    for engine in &engines {
        for case in &cases {
            bar.set_message(format!("{} {}", engine.backend_name(), case.name));
            let r = Record::of(case, engine, case.run(engine, o));
            bar.suspend(|| println!("{}", row(&r)));
            bar.inc(1);
            records.push(r);
        }
    }
    bar.finish_and_clear();
    let command: Vec<String> = std::iter::once("ortho".to_string()).chain(std::env::args().skip(1)).collect();
    let report = Report::new(records, command.join(" "));
    report.write(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    println!("report: {}", a.out.join("report.md").display());
    for file in &a.splice {
        splice(file, &report)?;
    }
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

fn read_report(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not an ortho bench results.json: {e}", path.display()))
}

/// The marked parts `--splice` fills: the whole report, and its headline ratios.
const PARTS: [(&str, &str); 2] = [
    ("<!-- ortho bench -->", "<!-- end ortho bench -->"),
    ("<!-- ortho bench headline -->", "<!-- end ortho bench headline -->"),
];

/// Replaces what lies between each pair of markers in `file`: the whole report (its headings one level
/// down) or its headline.
fn splice(file: &Path, report: &Report) -> Result<(), String> {
    let fail = |e: String| format!("--splice {}: {e}", file.display());
    let mut text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    let whole = report.markdown();
    let nested: Vec<String> =
        whole.lines().map(|l| if l.starts_with('#') { format!("#{l}") } else { l.into() }).collect();
    let bodies = [nested.join("\n"), report.headline().trim_end().to_string()];
    let mut found = false;
    for ((begin, end), body) in PARTS.into_iter().zip(bodies) {
        let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else { continue };
        if e < b {
            return Err(fail(format!("`{end}` comes before `{begin}`")));
        }
        text = format!("{}{begin}\n{body}\n{}", &text[..b], &text[e..]);
        found = true;
    }
    if !found {
        return Err(fail(format!("no `{}` ... `{}` markers", PARTS[0].0, PARTS[0].1)));
    }
    std::fs::write(file, text).map_err(|e| fail(e.to_string()))
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
        "{:<8} {:<48} {:>10} {:>10} {:>9.2} {:>9.2} {:>9.1e} {}",
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
