//! `ortho tune`: times every GEMM variant on the shape classes of ortho's products, and every
//! candidate chunk of causal attention, on each GPU adapter, caches the fastest (as the engine would
//! on first meeting each class) and prints what won and by how much.

use clap::Args;
use ortho::{BackendChoice, ChunkClass, DEFAULT_CHUNK, Engine, GemmClass, GemmVariant, Kernel, Schedule};

#[derive(Args)]
pub struct TuneArgs {
    /// auto (every GPU backend), vulkan, gl, metal or dx12. Default: ORTHO_BACKEND, else auto.
    #[arg(long, value_parser = crate::parse_backend)]
    backend: Option<BackendChoice>,
    /// A class to tune, `batch,m,n,k` with `t` after m or n for a transposed operand and `,f16` at
    /// the end for f16 operands (`1,4096t,256,64`, `1,1024,1024,1024,f16`); repeatable. Default: the classes of the engine's products below, then
    /// the causal chunk of FAVOR+ at d = 64, m = 256, dv = 64 in the auto and sequential schedules.
    #[arg(long = "class", value_parser = parse_class)]
    classes: Vec<GemmClass>,
}

/// Causal attention as the benchmarks run it: FAVOR+, d = dv = 64, m = 256.
fn default_chunk_classes() -> Vec<ChunkClass> {
    [Schedule::Auto, Schedule::Sequential].map(|s| ChunkClass::new(Kernel::Softmax, 64, 256, 64, s)).to_vec()
}

/// The products the kernels record most: a square GEMM, FAVOR's feature map (L x d times d x m,
/// the projection read transposed), its key-value state (m x L times L x dv, features read
/// transposed) and output (L x m times m x dv+1), the batched blocks of CWY and the flows, and the
/// square GEMM of f16 operands (on adapters with `SHADER_F16`).
fn default_classes() -> Vec<GemmClass> {
    vec![
        GemmClass::new(1, 1024, 1024, 1024, false, false),
        GemmClass::new(1, 1024, 1024, 1024, false, false).with_f16_inputs(),
        GemmClass::new(1, 4096, 256, 64, false, true),
        GemmClass::new(1, 256, 64, 4096, true, false),
        GemmClass::new(1, 4096, 65, 256, false, false),
        GemmClass::new(64, 64, 64, 64, false, false),
        GemmClass::new(1024, 16, 16, 16, false, false),
        GemmClass::new(1024, 32, 32, 32, false, false),
    ]
}

fn parse_class(s: &str) -> Result<GemmClass, String> {
    let mut parts: Vec<&str> = s.split(',').collect();
    let f16 = parts.last() == Some(&"f16");
    if f16 {
        parts.pop();
    }
    let bad = || format!("{s}: expected batch,m,n,k[,f16] (a `t` after m or n transposes that operand)");
    let [z, m, n, k] = parts[..] else { return Err(bad()) };
    let size = |x: &str| x.trim_end_matches('t').parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(bad);
    let class = GemmClass::new(size(z)?, size(m)?, size(n)?, size(k)?, m.ends_with('t'), n.ends_with('t'));
    Ok(if f16 { class.with_f16_inputs() } else { class })
}

pub fn run(args: &TuneArgs) -> Result<(), String> {
    let engines: Vec<_> = crate::validate::engines(args.backend)?.into_iter().filter(|e| e.is_gpu()).collect();
    if engines.is_empty() {
        return Err("no GPU adapter to tune".into());
    }
    let classes = if args.classes.is_empty() { default_classes() } else { args.classes.clone() };
    let today = GemmVariant::DEFAULT.name();
    println!(
        "{:<40} {:<42} {:<24} {:>10} {:>12} {:>13}",
        "adapter", "class (timed shape)", "chosen", "ms", "x tiled-16", "x runner-up"
    );
    for engine in &engines {
        for (i, class) in classes.iter().enumerate() {
            if class.f16_inputs && !engine.has_shader_f16() {
                eprintln!("ortho: {} has no SHADER_F16: no products of f16 operands to tune", engine.describe());
                continue;
            }
            eprintln!("ortho: tuning {}/{} on {}: {}", i + 1, classes.len(), engine.describe(), class.describe());
            let r = engine.tune_gemm(*class).map_err(|e| e.to_string())?;
            report(engine, &class.describe(), &r.chosen, &r.seconds, &today);
        }
    }
    if args.classes.is_empty() {
        tune_chunks(&engines)?;
    }
    Ok(())
}

/// The causal chunk of each default class on every engine: chosen, its time, and its speed-up over
/// the untuned default and over the runner-up.
fn tune_chunks(engines: &[Engine]) -> Result<(), String> {
    println!(
        "{:<40} {:<42} {:<24} {:>10} {:>12} {:>13}",
        "adapter",
        "causal attention (timed shape)",
        "chosen",
        "ms",
        format!("x C={DEFAULT_CHUNK}"),
        "x runner-up"
    );
    for engine in engines {
        for class in default_chunk_classes() {
            eprintln!("ortho: tuning the causal chunk on {}: {}", engine.describe(), class.describe());
            let r = engine.tune_causal_chunk(class).map_err(|e| e.to_string())?;
            let seconds: Vec<(String, f64)> = r.seconds.iter().map(|(c, s)| (format!("C={c}"), *s)).collect();
            report(engine, &class.describe(), &format!("C={}", r.chosen), &seconds, &format!("C={DEFAULT_CHUNK}"));
        }
    }
    Ok(())
}

/// One row of a table: the chosen candidate's time and its speed-up over `default` and over the
/// runner-up; every candidate's time on stderr.
fn report(engine: &Engine, class: &str, chosen: &str, seconds: &[(String, f64)], default: &str) {
    let of = |name: &str| seconds.iter().find(|(c, _)| c == name).map_or(f64::NAN, |(_, s)| *s);
    let best = of(chosen);
    let runner_up = seconds.iter().filter(|(c, _)| c != chosen).map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    println!(
        "{:<40} {:<42} {:<24} {:>10.3} {:>12.2} {:>13.2}",
        engine.describe(),
        class,
        chosen,
        best * 1e3,
        of(default) / best,
        runner_up / best
    );
    let all: Vec<String> = seconds.iter().map(|(c, s)| format!("{c} {:.3} ms", s * 1e3)).collect();
    eprintln!("  {}", all.join(", "));
}
