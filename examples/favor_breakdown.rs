//! Where FAVOR+'s device time goes on an adapter: the operation (L = 4096, d = 64, m = 256, dv = 64)
//! beside `matmul` at the shape of each of its products (the projections `X W^T`, the state
//! `phi(K)^T [V | 1]`, the output `phi(Q) S`), the state product without and with its ones column,
//! the square GEMM, and a 1 x 1 product (one dispatch's fixed cost). The rest of the operation's
//! time is its row statistics, feature maps and normalisation. Median of 9 GPU-timestamped runs
//! after one untimed run, with the engine's tuned GEMM variants.
//!
//! `cargo run --release --example favor_breakdown [-- vulkan|gl]`

use ortho::ops::{Favor, Matmul};
use ortho::random::{Gaussian, Scaling, projection};
use ortho::{Engine, EngineOptions, FavorOptions, Kernel, MatmulOptions, MeasureOptions, Tensor};

fn gaussian(shape: &[usize], seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| (0.5 * g.sample()) as f32)
}

fn main() -> ortho::Result<()> {
    let backend = std::env::args().nth(1).unwrap_or_else(|| "vulkan".into()).parse()?;
    let engine = Engine::with_options(&EngineOptions { backend, require_gpu: true, ..Default::default() })?;
    println!("{}", engine.describe());
    let median = |what: &str, op: &dyn Fn() -> ortho::Result<ortho::DeviceTimes>| -> ortho::Result<()> {
        let mut seconds = op()?.seconds;
        seconds.sort_by(f64::total_cmp);
        println!("{what:<44} {:>9.2} ms", seconds[seconds.len() / 2] * 1e3);
        Ok(())
    };
    let o = MeasureOptions { repeats: 9, ..Default::default() };
    let (l, d, m, dv) = (4096, 64, 256, 64);
    let (q, k, v) = (gaussian(&[l, d], 1), gaussian(&[l, d], 2), gaussian(&[l, dv], 3));
    let w = projection(m, d, Scaling::Chi, 4)?.to_f32();
    let favor = Favor(FavorOptions::new(Kernel::Softmax));
    median("FAVOR+ L=4096 d=64 m=256 dv=64", &|| engine.time_device(&favor, &[&q, &k, &v, &w], o))?;
    let product = |ta, tb| Matmul(MatmulOptions { transpose_a: ta, transpose_b: tb });
    let phi = gaussian(&[l, m], 5);
    median("projection X W^T (4096 x 64 x 256)", &|| engine.time_device(&product(false, true), &[&q, &w], o))?;
    for cols in [dv, dv + 1, 1] {
        let values = gaussian(&[l, cols], 6);
        let name = format!("state phi^T V (256 x 4096 x {cols})");
        median(&name, &|| engine.time_device(&product(true, false), &[&phi, &values], o))?;
    }
    let state = gaussian(&[m, dv + 1], 7);
    median("output phi S (4096 x 256 x 65)", &|| engine.time_device(&product(false, false), &[&phi, &state], o))?;
    let square = gaussian(&[1024, 1024], 8);
    median("GEMM 1024^3", &|| engine.time_device(&product(false, false), &[&square, &square], o))?;
    let one = gaussian(&[1, 1], 9);
    median("matmul 1 x 1 x 1 (one dispatch)", &|| engine.time_device(&product(false, false), &[&one, &one], o))
}
