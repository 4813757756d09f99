//! What a sweep measured: one [`Record`] per case and engine, gathered in a [`Report`] that writes
//! `results.json` and `report.md`.

use crate::cases::Case;
use crate::ratios::Ratio;
use ortho::{BackendChoice, Engine, Measurement};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// A measured figure as JSON holds it: NaN (not measured) is written as `null` and read back as NaN.
fn figure<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One case on one engine (figures NaN where it could not run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub family: String,
    pub case: String,
    pub size: usize,
    /// `vulkan`, `gl`, ... or `cpu` (the f64 reference as the fallback).
    pub backend: String,
    pub adapter: String,
    /// The device time's median (s) and its fastest and slowest repeats relative to it.
    #[serde(deserialize_with = "figure")]
    pub device_median_s: f64,
    #[serde(deserialize_with = "figure")]
    pub device_fastest: f64,
    #[serde(deserialize_with = "figure")]
    pub device_slowest: f64,
    /// Whether the device time is by GPU timestamps (else wall clock around submit-and-wait).
    pub timestamps: bool,
    /// The median wall time of the whole host call (s), upload and download included.
    #[serde(deserialize_with = "figure")]
    pub call_median_s: f64,
    pub flops: f64,
    pub bytes: f64,
    #[serde(deserialize_with = "figure")]
    pub gflops: f64,
    #[serde(deserialize_with = "figure")]
    pub gbps: f64,
    pub peak_bytes: u64,
    pub scratch_bytes: u64,
    /// Relative Frobenius error against the f64 twin, and the bound it must meet.
    #[serde(deserialize_with = "figure")]
    pub error: f64,
    pub bound: f64,
    pub pass: bool,
    /// Why the case could not run, when it could not (then `pass` is false).
    pub failure: Option<String>,
}

impl Record {
    /// The record of `case` on `engine`: measured, or the reason it could not be.
    pub fn of(case: &Case, engine: &Engine, measured: ortho::Result<Measurement>) -> Record {
        let mut r = Record {
            family: case.family.into(),
            case: case.name.clone(),
            size: case.size,
            backend: engine.backend_name(),
            adapter: engine.describe(),
            device_median_s: f64::NAN,
            device_fastest: f64::NAN,
            device_slowest: f64::NAN,
            timestamps: false,
            call_median_s: f64::NAN,
            flops: case.flops,
            bytes: case.bytes,
            gflops: f64::NAN,
            gbps: f64::NAN,
            peak_bytes: 0,
            scratch_bytes: 0,
            error: f64::NAN,
            bound: case.bound,
            pass: false,
            failure: None,
        };
        match measured {
            Ok(m) => {
                let t = m.device_median();
                r.device_median_s = t;
                (r.device_fastest, r.device_slowest) = m.device_spread();
                r.timestamps = m.timestamps;
                r.call_median_s = m.call_median();
                r.gflops = case.flops / t * 1e-9;
                r.gbps = case.bytes / t * 1e-9;
                r.peak_bytes = m.peak_bytes;
                r.scratch_bytes = m.scratch_bytes;
                r.error = m.error;
                r.pass = m.error <= case.bound;
            }
            Err(e) => r.failure = Some(e.to_string()),
        }
        r
    }
}

/// A sweep's records with what they ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub ortho_version: String,
    /// The commit the measuring binary was built from, when it was built in a git checkout.
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch, and the same as a UTC date.
    pub unix_time: u64,
    pub date: String,
    /// The command line that ran the sweep, and the machine: CPU model, cores and memory.
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub machine: String,
    /// Every adapter found: name, backend, driver, features and limits.
    pub adapters: Vec<serde_json::Value>,
    pub records: Vec<Record>,
    /// The ratios between records of this run.
    #[serde(default)]
    pub ratios: Vec<Ratio>,
}

impl Report {
    /// The report of `records`, run by `command`.
    pub fn new(records: Vec<Record>, command: String) -> Report {
        let unix_time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let git_commit = Some(env!("ORTHO_GIT_COMMIT").to_string()).filter(|c| !c.is_empty());
        let adapters = Engine::adapters(BackendChoice::Auto)
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "backend": a.backend, "name": a.name, "device_type": a.device_type, "driver": a.driver,
                    "f16": a.f16, "f64": a.f64, "subgroups": a.subgroups, "timestamps": a.timestamps,
                    "max_storage_binding": a.max_storage_binding, "max_buffer": a.max_buffer,
                    "max_workgroup_storage": a.max_workgroup_storage, "max_invocations": a.max_invocations,
                })
            })
            .collect();
        Report {
            ortho_version: env!("CARGO_PKG_VERSION").into(),
            git_commit,
            unix_time,
            date: utc_date(unix_time),
            command,
            machine: machine(),
            adapters,
            ratios: crate::ratios::ratios(&records),
            records,
        }
    }

    /// The records that failed validation or could not run.
    pub fn failures(&self) -> Vec<&Record> {
        self.records.iter().filter(|r| !r.pass).collect()
    }

    /// Writes `results.json`, the plots and `report.md` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("results.json"), json)?;
        for (file, svg) in crate::plots::plots(&self.records).map_err(std::io::Error::other)? {
            std::fs::write(dir.join(file), svg)?;
        }
        std::fs::write(dir.join("report.md"), self.markdown())
    }

    /// `` `command`: ortho 0.1.0 (commit), date, on machine. ``
    fn provenance(&self) -> String {
        format!(
            "`{}`: ortho {}{}, {}, on {}.",
            self.command,
            self.ortho_version,
            self.git_commit.as_ref().map_or(String::new(), |c| format!(" ({})", &c[..c.len().min(12)])),
            self.date,
            self.machine
        )
    }

    /// The headline: FAVOR+ against exact attention and CWY against sequential Householder, per size
    /// and backend, with what ran them.
    pub fn headline(&self) -> String {
        format!("{}\n\n{}", self.provenance(), crate::ratios::markdown(&self.ratios, &crate::ratios::KINDS[..3]))
    }

    /// The report as Markdown: what ran where, the ratios, then one table per backend.
    pub fn markdown(&self) -> String {
        let mut out = format!("# ortho bench\n\n{}\n\n", self.provenance());
        out += "Device time is the median of the repeats by GPU timestamps (\"wall\": by the clock around the \
                submission), its spread the fastest and slowest repeat over the median; call time is the whole host \
                call with upload and download. Error: relative Frobenius against the f64 twin.\n\n";
        if !self.ratios.is_empty() {
            out += "## Ratios\n\n";
            out += &crate::ratios::markdown(&self.ratios, &crate::ratios::KINDS);
        }
        for backend in crate::ratios::distinct(self.records.iter().map(|r| r.backend.as_str())) {
            let records: Vec<&Record> = self.records.iter().filter(|r| r.backend == backend).collect();
            out += &format!("## {}\n\n", records[0].adapter);
            out += "| case | device time | spread | call time | GFLOP/s | GB/s | scratch | error | bound |\n";
            out += "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
            for r in records {
                out += &r.markdown_row();
            }
            out += "\n";
        }
        out
    }
}

impl Record {
    fn markdown_row(&self) -> String {
        if let Some(failure) = &self.failure {
            return format!("| {} | failed: {failure} | | | | | | | {:.0e} |\n", self.case, self.bound);
        }
        let clock = if self.timestamps { "" } else { " (wall)" };
        format!(
            "| {} | {}{clock} | {:.2}-{:.2} | {} | {:.2} | {:.2} | {:.1} MiB | {:.1e}{} | {:.0e} |\n",
            self.case,
            seconds(self.device_median_s),
            self.device_fastest,
            self.device_slowest,
            seconds(self.call_median_s),
            self.gflops,
            self.gbps,
            self.scratch_bytes as f64 / (1 << 20) as f64,
            self.error,
            if self.pass { "" } else { " FAIL" },
            self.bound
        )
    }
}

/// The CPU model, its threads and the memory of this machine, as far as the system says.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok()))
        .map_or(String::new(), |kb| format!(", {:.0} GiB", kb / (1 << 20) as f64));
    format!("{cpu} ({threads} threads{memory})")
}

/// `s` seconds as `12.3 ms` or `1.23 s`.
pub fn seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (the proleptic Gregorian calendar, days to civil date).
fn utc_date(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3_600, secs % 3_600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report with a case that could not run reads back as written (its figures NaN).
    #[test]
    fn reports_read_back() {
        let cases = crate::sweep(crate::Sweep::Quick);
        let cpu = Engine::cpu("test");
        let o = ortho::MeasureOptions { warmup: 0, repeats: 1, ..Default::default() };
        let ran = Record::of(&cases[0], &cpu, cases[0].run(&cpu, o));
        let failed = Record::of(&cases[0], &cpu, Err(ortho::Error::Unsupported("not here".into())));
        let report = Report::new(vec![ran.clone(), failed], "ortho bench".into());
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.records.len(), 2);
        assert!(back.records[0].pass && back.records[0].gflops == ran.gflops && back.records[0].error == ran.error);
        let failed = &back.records[1];
        assert!(
            !failed.pass
                && failed.device_median_s.is_nan()
                && failed.failure.as_deref() == Some("not supported: not here")
        );
        assert_eq!(report.failures().len(), 1);
        assert!(
            report.markdown().contains("| gemm n=128 | failed: not supported: not here |"),
            "{}",
            report.markdown()
        );
    }

    #[test]
    fn dates() {
        assert_eq!(super::utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc_date(1_796_041_500), "2026-11-30 12:25 UTC");
        assert_eq!(super::utc_date(951_782_400), "2000-02-29 00:00 UTC");
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::Record;

    /// A record that ran and passed in `seconds` (repeats within +-10%) at `gflops`.
    pub fn record(backend: &str, family: &str, case: &str, size: usize, seconds: f64, gflops: f64) -> Record {
        Record {
            family: family.into(),
            case: case.into(),
            size,
            backend: backend.into(),
            adapter: format!("{backend} adapter"),
            device_median_s: seconds,
            device_fastest: 0.9,
            device_slowest: 1.1,
            timestamps: backend != "cpu",
            call_median_s: seconds,
            flops: gflops * seconds * 1e9,
            bytes: 1.0,
            gflops,
            gbps: 1.0,
            peak_bytes: 0,
            scratch_bytes: 0,
            error: 1e-7,
            bound: 1e-5,
            pass: true,
            failure: None,
        }
    }
}
