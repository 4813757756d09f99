//! `ortho`: list devices, run kernels on `.npy` files, and validate every kernel against the f64
//! reference on every adapter.

mod bench;
mod bilevel;
mod express;
mod ising;
mod npy;
mod storage;
mod tune;
mod validate;

use clap::{Args, Parser, Subcommand};
use npy::Outputs;
use ortho::random::{Scaling, projection};
use ortho::{BackendChoice, Checkpoints, Engine, EngineOptions, FavorOptions, GroupMap, Kernel, Schedule, ops};
use ortho_ref::flow::{Activation, Flow, Generator, Method};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use storage::Storage;

#[derive(Parser)]
#[command(name = "ortho", version, about = "GPU kernels for random-feature attention and orthogonal matrices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct Backend {
    /// auto, vulkan, gl, metal, dx12 or cpu (the f64 reference). Default: ORTHO_BACKEND, else auto.
    #[arg(long, value_parser = parse_backend)]
    pub(crate) backend: Option<BackendChoice>,
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    s.parse().map_err(|e: ortho::Error| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter with its backend, type, features and key limits.
    Devices(Backend),
    /// Random-feature attention (FAVOR+ / FAVOR / ReLU) of .npy inputs.
    #[command(allow_negative_numbers = true)]
    Favor(FavorArgs),
    /// Gradients dq, dk, dv of random-feature attention for an upstream gradient of its output.
    #[command(allow_negative_numbers = true)]
    FavorGrad(FavorGradArgs),
    /// Exact softmax attention of .npy inputs (the baseline).
    #[command(allow_negative_numbers = true)]
    Attention(AttentionArgs),
    /// Orthogonal (or Stiefel) matrices from Householder vectors by compact WY, or their product
    /// with a matrix.
    #[command(allow_negative_numbers = true)]
    Cwy(CwyArgs),
    /// Matrix exponential of every matrix of A ([n, n] or [batch, n, n], n <= 64).
    #[command(allow_negative_numbers = true)]
    Expm(MatrixArgs),
    /// Cayley map (I - A/2)^(-1) (I + A/2) of every matrix of A.
    #[command(allow_negative_numbers = true)]
    Cayley(MatrixArgs),
    /// Integrate a matrix flow W' = W b(t, W) on the orthogonal group (and optionally the nested
    /// state x' = sigma(W x)).
    #[command(allow_negative_numbers = true)]
    Flow(FlowArgs),
    /// Exact log Z, edge marginals and samples of zero-field Ising models on planar graphs and graphs
    /// glued from planar and small parts.
    #[command(allow_negative_numbers = true)]
    Ising(ising::IsingArgs),
    /// SGD on quadratic bi-level tasks with exact, first-order (FOM) or unbiased first-order (UFOM)
    /// outer gradients, or a batch of gradient estimates.
    #[command(allow_negative_numbers = true)]
    Bilevel(bilevel::BilevelArgs),
    /// Inputs X and fixed weights W_Q, W_K whose attention row-softmax reproduces a sparse pattern
    /// within (epsilon, delta), with d = O(log L).
    Express(express::ExpressArgs),
    /// Run every kernel on every adapter and on the CPU against the f64 reference.
    Validate(ValidateArgs),
    /// Time every kernel family on every adapter and on the CPU fallback, checked against the f64
    /// reference as it is timed; writes results.json and report.md.
    Bench(bench::BenchArgs),
    /// Time every GEMM variant on each GPU adapter for the shape classes of ortho's products and
    /// cache the fastest (ORTHO_TUNE_CACHE, else ~/.cache/ortho/tune.json), printing what won.
    Tune(tune::TuneArgs),
}

#[derive(Args)]
struct ValidateArgs {
    #[command(flatten)]
    backend: Backend,
    /// f16: every family in f16 storage instead, against the twin on the f16 inputs.
    #[command(flatten)]
    storage: Storage,
}

#[derive(Args)]
struct FlowArgs {
    /// Initial W: [n, n] or [batch, n, n].
    #[arg(long)]
    w0: PathBuf,
    /// lie-euler, cayley-euler or rkmk4.
    #[arg(long, value_parser = |s: &str| s.parse::<Method>().map_err(|e| e.to_string()))]
    method: Method,
    /// Step size h.
    #[arg(long)]
    dt: f64,
    /// Number of steps.
    #[arg(long)]
    steps: usize,
    /// Isospectral generator [W^T Qs W, Ns]: the symmetric Qs and Ns, [n, n] or [batch, n, n].
    #[arg(long, num_args = 2, value_names = ["QS", "NS"], conflicts_with = "generators", required_unless_present = "generators")]
    isospectral: Option<Vec<PathBuf>>,
    /// Given skew generators, [steps, batch, n, n].
    #[arg(long)]
    generators: Option<PathBuf>,
    /// Nested state x0: [batch, n].
    #[arg(long, requires = "x_out")]
    x0: Option<PathBuf>,
    /// Activation of the nested state: tanh, relu or identity.
    #[arg(long, default_value = "tanh", value_parser = |s: &str| s.parse::<Activation>().map_err(|e| e.to_string()))]
    activation: Activation,
    /// Where to write the final nested state.
    #[arg(long, requires = "x0")]
    x_out: Option<PathBuf>,
    /// One Newton–Schulz re-orthonormalisation every K steps.
    #[arg(long)]
    newton_schulz_every: Option<usize>,
    /// Where to write the final W (f32).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    backend: Backend,
}

#[derive(Args)]
struct MatrixArgs {
    /// Square matrices: [n, n] or [batch, n, n].
    #[arg(long)]
    input: PathBuf,
    /// Where to write the result (f32).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    backend: Backend,
}

#[derive(Args)]
struct CwyArgs {
    /// Householder vectors as columns: [N, L] or [batch, N, L], L <= N, no zero column.
    #[arg(long)]
    u: PathBuf,
    /// Write the first L columns of Q (T-CWY, [.., N, L]) instead of Q ([.., N, N]).
    #[arg(long, conflicts_with = "apply")]
    stiefel: bool,
    /// Write Q X for this X ([.., N, K]) without forming Q.
    #[arg(long)]
    apply: Option<PathBuf>,
    /// With --apply: write Q^T X.
    #[arg(long, requires = "apply")]
    transpose: bool,
    /// Where to write the result (f32).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    backend: Backend,
}

#[derive(Args)]
struct Qkv {
    /// Queries, [L, d] or [B, H, L, d].
    #[arg(long)]
    q: PathBuf,
    /// Keys, shaped like q.
    #[arg(long)]
    k: PathBuf,
    /// Values, [L, dv] or [B, H, L, dv].
    #[arg(long)]
    v: PathBuf,
    /// Where to write the output (f32).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct FavorArgs {
    #[command(flatten)]
    qkv: Qkv,
    /// Projection [m, d] or [H, m, d]; otherwise one is drawn with --features and --seed.
    #[arg(long, conflicts_with_all = ["features", "seed", "scaling"])]
    projection: Option<PathBuf>,
    /// Random features m, for a drawn projection.
    #[arg(long, required_unless_present = "projection")]
    features: Option<usize>,
    /// Seed of the drawn projection (ChaCha20; the same matrix on every machine).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Row norms of the drawn projection: chi, sqrt-d or iid.
    #[arg(long, default_value = "chi", value_parser = |s: &str| s.parse::<Scaling>().map_err(|e| e.to_string()))]
    scaling: Scaling,
    /// Save the drawn projection here.
    #[arg(long, requires = "features", conflicts_with = "projection")]
    save_projection: Option<PathBuf>,
    #[command(flatten)]
    attention: AttentionKind,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    backend: Backend,
}

/// The kernel and causal options `favor` and `favor-grad` share.
#[derive(Args)]
struct AttentionKind {
    /// softmax (FAVOR+), trig (FAVOR) or relu.
    #[arg(long, default_value = "softmax", value_parser = |s: &str| s.parse::<Kernel>().map_err(|e| e.to_string()))]
    kernel: Kernel,
    /// Causal attention (each token sees itself and the past), through random-feature prefix sums.
    #[arg(long)]
    causal: bool,
    /// Tokens per chunk of causal attention (default 64).
    #[arg(long, requires = "causal")]
    chunk: Option<usize>,
    /// How causal chunks are walked: auto, parallel (every chunk at once) or sequential (512 rows at
    /// a time, the state on chip; scratch independent of L).
    #[arg(long, default_value = "auto", requires = "causal", value_parser = |s: &str| s.parse::<Schedule>().map_err(|e| e.to_string()))]
    schedule: Schedule,
}

impl AttentionKind {
    fn options(&self) -> FavorOptions {
        FavorOptions {
            causal: self.causal,
            chunk: self.chunk,
            schedule: self.schedule,
            ..FavorOptions::new(self.kernel)
        }
    }
}

#[derive(Args)]
struct FavorGradArgs {
    /// Queries, [L, d] or [B, H, L, d].
    #[arg(long)]
    q: PathBuf,
    /// Keys, shaped like q.
    #[arg(long)]
    k: PathBuf,
    /// Values, [L, dv] or [B, H, L, dv].
    #[arg(long)]
    v: PathBuf,
    /// Projection [m, d] or [H, m, d].
    #[arg(long)]
    projection: PathBuf,
    /// Gradient of the loss with respect to the output, shaped like the output.
    #[arg(long)]
    grad_out: PathBuf,
    #[command(flatten)]
    attention: AttentionKind,
    /// Causal states the forward pass keeps: none (the backward pass rebuilds them; scratch
    /// independent of L), every (every chunk) or N (every N chunks).
    #[arg(long, default_value = "none", requires = "causal", value_parser = |s: &str| s.parse::<Checkpoints>().map_err(|e| e.to_string()))]
    checkpoints: Checkpoints,
    #[arg(long)]
    dq: PathBuf,
    #[arg(long)]
    dk: PathBuf,
    #[arg(long)]
    dv: PathBuf,
    /// Also write the gradient with respect to the projection, shaped like it.
    #[arg(long)]
    dw: Option<PathBuf>,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    backend: Backend,
}

#[derive(Args)]
struct AttentionArgs {
    #[command(flatten)]
    qkv: Qkv,
    #[arg(long)]
    causal: bool,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    backend: Backend,
}

fn engine(b: &Backend) -> Result<Engine, String> {
    let mut options = EngineOptions::from_env().map_err(|e| e.to_string())?;
    if let Some(backend) = b.backend {
        options.backend = backend;
    }
    let engine = Engine::with_options(&options).map_err(|e| e.to_string())?;
    match engine.fallback_reason() {
        Some(reason) if options.backend != BackendChoice::Cpu => {
            eprintln!("ortho: running on the CPU reference: {reason}")
        }
        _ => eprintln!("ortho: {}", engine.describe()),
    }
    Ok(engine)
}

fn devices(b: &Backend) -> Result<(), String> {
    let adapters = Engine::adapters(b.backend.unwrap_or_default());
    if adapters.is_empty() {
        println!("no GPU adapters; every verb can still run on the CPU reference (--backend cpu)");
    }
    for a in adapters {
        println!("{} / {} ({})", a.backend, a.name, a.device_type);
        println!("  driver: {}", a.driver);
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!(
            "  f16: {}  f64: {}  subgroups: {}  timestamps: {}",
            yes(a.f16),
            yes(a.f64),
            yes(a.subgroups),
            yes(a.timestamps)
        );
        println!(
            "  max storage binding: {} MiB  max buffer: {} MiB  workgroup memory: {} KiB  invocations per workgroup: {}",
            a.max_storage_binding >> 20,
            a.max_buffer >> 20,
            a.max_workgroup_storage >> 10,
            a.max_invocations
        );
    }
    Ok(())
}

/// A progress bar for `total` units of `what` on stderr; hidden for a single unit.
pub(crate) fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = if total > 1 { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
    let style = format!("{{bar:40}} {{pos}}/{{len}} {what} ({{eta}} left)");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&style).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The outputs a run writes, `(option, path)`, those not given left out.
pub(crate) fn outputs(list: &[(&str, Option<&PathBuf>)]) -> Result<Outputs, String> {
    let present: Vec<(&str, &Path)> = list.iter().filter_map(|(what, p)| p.map(|p| (*what, p.as_path()))).collect();
    Outputs::create(&present)
}

fn favor(a: &FavorArgs) -> Result<(), String> {
    let mut out = outputs(&[("out", Some(&a.qkv.out)), ("save-projection", a.save_projection.as_ref())])?;
    let st = a.storage;
    let [q, k, v] = [(&a.qkv.q, "q"), (&a.qkv.k, "k"), (&a.qkv.v, "v")].map(|(path, name)| st.read(path, name));
    let (q, k, v) = (q?, k?, v?);
    let w = match (&a.projection, a.features) {
        (Some(path), _) => st.read(path, "projection")?,
        (None, Some(m)) => {
            let d = *q.shape().last().ok_or("q: expected shape [L, d] or [B, H, L, d], got []")?;
            let w = st.made(projection(m, d, a.scaling, a.seed).map_err(|e| e.to_string())?.to_f32());
            if a.save_projection.is_some() {
                w.write(&mut out, 1)?;
            }
            w
        }
        (None, None) => return Err("give --projection W.npy or --features M".into()),
    };
    let engine = engine(&a.backend)?;
    st.run(&engine, &ops::Favor(a.attention.options()), &[q, k, v, w], &mut out, 1)?;
    out.commit()
}

fn favor_grad(a: &FavorGradArgs) -> Result<(), String> {
    let mut out = outputs(&[("dq", Some(&a.dq)), ("dk", Some(&a.dk)), ("dv", Some(&a.dv)), ("dw", a.dw.as_ref())])?;
    let st = a.storage;
    let paths = [(&a.q, "q"), (&a.k, "k"), (&a.v, "v"), (&a.projection, "projection"), (&a.grad_out, "grad")];
    let inputs = paths.iter().map(|(path, name)| st.read(path, name)).collect::<Result<Vec<_>, _>>()?;
    let engine = engine(&a.backend)?;
    let options = FavorOptions { checkpoints: a.checkpoints, ..a.attention.options() };
    st.run(&engine, &ops::FavorBackward(options), &inputs, &mut out, if a.dw.is_some() { 4 } else { 3 })?;
    out.commit()
}

fn attention(a: &AttentionArgs) -> Result<(), String> {
    let mut out = outputs(&[("out", Some(&a.qkv.out))])?;
    let st = a.storage;
    let paths = [(&a.qkv.q, "q"), (&a.qkv.k, "k"), (&a.qkv.v, "v")];
    let inputs = paths.iter().map(|(path, name)| st.read(path, name)).collect::<Result<Vec<_>, _>>()?;
    let engine = engine(&a.backend)?;
    st.run(&engine, &ops::ExactAttention { causal: a.causal }, &inputs, &mut out, 1)?;
    out.commit()
}

fn cwy(a: &CwyArgs) -> Result<(), String> {
    let mut out = outputs(&[("out", Some(&a.out))])?;
    let st = a.storage;
    let u = st.read(&a.u, "u")?;
    let engine = engine(&a.backend)?;
    match &a.apply {
        Some(path) => {
            let x = st.read(path, "x")?;
            st.run(&engine, &ops::CwyApply { transpose: a.transpose }, &[u, x], &mut out, 1)?
        }
        None => st.run(&engine, &ops::Cwy { stiefel: a.stiefel }, &[u], &mut out, 1)?,
    }
    out.commit()
}

fn matrix_map(a: &MatrixArgs, cayley: bool) -> Result<(), String> {
    let mut out = outputs(&[("out", Some(&a.out))])?;
    let input = a.storage.read(&a.input, "a")?;
    let engine = engine(&a.backend)?;
    let map = if cayley { GroupMap::Cayley } else { GroupMap::Exp };
    a.storage.run(&engine, &ops::MatrixMap(map), &[input], &mut out, 1)?;
    out.commit()
}

fn flow(a: &FlowArgs) -> Result<(), String> {
    let mut out = outputs(&[("out", Some(&a.out)), ("x-out", a.x_out.as_ref())])?;
    let w0 = a.storage.read(&a.w0, "w0")?;
    let generator = match (&a.isospectral, &a.generators) {
        (Some(paths), _) => Generator::Isospectral {
            qs: npy::read(&paths[0], "qs")?.to_f64(),
            ns: npy::read(&paths[1], "ns")?.to_f64(),
        },
        (None, Some(path)) => Generator::Given(npy::read(path, "generators")?.to_f64()),
        (None, None) => return Err("give --isospectral QS.npy NS.npy or --generators OMEGA.npy".into()),
    };
    let state = match &a.x0 {
        Some(path) => Some((npy::read(path, "x0")?.to_f64(), a.activation)),
        None => None,
    };
    let flow = Flow {
        method: a.method,
        dt: a.dt,
        steps: a.steps,
        newton_schulz_every: a.newton_schulz_every,
        generator,
        state,
    };
    let engine = engine(&a.backend)?;
    a.storage.run(&engine, &flow, &[w0], &mut out, if a.x_out.is_some() { 2 } else { 1 })?;
    out.commit()
}

fn main() -> ExitCode {
    // Mesa's device-select Vulkan layer asks the Wayland display for its default GPU, and without one
    // prints a complaint on every run; ortho chooses its adapter itself.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: the process has no other thread yet.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Devices(b) => devices(b),
        Command::Favor(a) => favor(a),
        Command::FavorGrad(a) => favor_grad(a),
        Command::Attention(a) => attention(a),
        Command::Cwy(a) => cwy(a),
        Command::Expm(a) => matrix_map(a, false),
        Command::Cayley(a) => matrix_map(a, true),
        Command::Flow(a) => flow(a),
        Command::Ising(a) => ising::run(a),
        Command::Bilevel(a) => bilevel::run(a),
        Command::Express(a) => express::run(a),
        Command::Validate(a) => validate::run(a.backend.backend, a.storage.dtype),
        Command::Bench(a) => bench::run(a),
        Command::Tune(a) => tune::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ortho: error: {e}");
            ExitCode::FAILURE
        }
    }
}
