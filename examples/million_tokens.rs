//! Causal FAVOR+ over a million tokens (L = 2^20, d = dv = 64, m = 256) through the library's host
//! entry point: the inputs pass the device's binding limit, so the engine runs the sequence in
//! segments with the attention state carried between them. Prints the time, the buffer pool's peak
//! (and how much of it is scratch), the process's peak host memory against the inputs' size, and
//! the largest difference of the first 2,048 outputs from the f64 reference on those tokens (a
//! causal output depends only on the tokens before it).
//!
//!     cargo run --release --example million_tokens [log2 L] [auto|parallel|sequential]

use ortho::random::{Gaussian, Scaling, projection};
use ortho::{Engine, FavorOptions, Kernel, Tensor};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let len = 1usize << args.next().map_or(Ok(20), |a| a.parse::<u32>())?;
    let schedule = args.next().map_or(Ok(Default::default()), |a| a.parse())?;
    let (dim, features, prefix) = (64, 256, 2048.min(len));
    let engine = Engine::new()?;
    println!("engine: {}; L = {len}, d = dv = {dim}, m = {features}, schedule {schedule:?}", engine.describe());

    let mut g = Gaussian::new(1);
    let mut tokens = || Tensor::from_fn(&[len, dim], |_| 0.5 * g.sample() as f32);
    let (q, k, v) = (tokens(), tokens(), tokens());
    let w = projection(features, dim, Scaling::Chi, 7)?.to_f32();
    let options = FavorOptions { schedule, ..FavorOptions::causal(Kernel::Softmax) };
    let input_bytes = 3 * 4 * (len * dim) as u64;

    engine.reset_peak();
    let start = Instant::now();
    let out = engine.favor(&q, &k, &v, &w, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = engine.pool_stats().peak_bytes;
    println!("{len} tokens in {seconds:.1} s ({:.0} tokens/s)", len as f64 / seconds);
    println!("pool peak {:.1} MiB (inputs {:.0} MiB)", mib(peak), mib(input_bytes));
    match peak_host_bytes() {
        Some(host) => println!(
            "peak host memory {:.0} MiB = {:.2}x the inputs (inputs, output and the copies this example keeps)",
            mib(host),
            host as f64 / input_bytes as f64
        ),
        None => println!("peak host memory: not reported on this system"),
    }

    let head = |t: &Tensor<f32>| Tensor::new(&[prefix, dim], t.data()[..prefix * dim].to_vec());
    let want = Engine::cpu("reference").favor(&head(&q)?, &head(&k)?, &head(&v)?, &w, &options)?;
    let worst = ortho_ref::tensor::max_abs_diff(&out.data()[..prefix * dim], want.data());
    println!("first {prefix} outputs: largest difference from the f64 reference {worst:.2e}");
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The process's peak resident memory (Linux: VmHWM).
fn peak_host_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}
