//! The `ortho` binary end to end: .npy in and out, every verb, and clear errors for bad input.
use npyz::WriterBuilder;
use ortho::Tensor;
use ortho::random::Gaussian;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A run with the documented GEMM variants (`tune_*` tests tune into their own cache files).
fn ortho(args: &[&str]) -> Output {
    ortho_with(args, &[("ORTHO_TUNE", "off")])
}

fn ortho_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ortho"));
    command.args(args).envs(env.iter().copied());
    command.output().expect("the ortho binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ortho-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn save<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[usize], data: &[T]) {
    let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn load(path: &Path) -> Tensor<f32> {
    let bytes = std::fs::read(path).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = f.shape().iter().map(|&n| n as usize).collect();
    Tensor::new(&shape, f.into_vec::<f32>().unwrap()).unwrap()
}

fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut g = Gaussian::new(seed);
    (0..n).map(|_| 0.5 * g.sample()).collect()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// q, k as f64 and f16 files and v as f32: every accepted dtype.
fn inputs(d: &Path, shape: &[usize], dv: usize) -> [PathBuf; 3] {
    let n: usize = shape.iter().product();
    let nv = n / shape[shape.len() - 1] * dv;
    let mut vshape = shape.to_vec();
    *vshape.last_mut().unwrap() = dv;
    let paths = [d.join("q.npy"), d.join("k.npy"), d.join("v.npy")];
    save(&paths[0], shape, &gaussian(n, 1));
    let k16: Vec<half::f16> = gaussian(n, 2).iter().map(|&x| half::f16::from_f64(x)).collect();
    save(&paths[1], shape, &k16);
    let v32: Vec<f32> = gaussian(nv, 3).iter().map(|&x| x as f32).collect();
    save(&paths[2], &vshape, &v32);
    paths
}

fn backends() -> Vec<&'static str> {
    let mut b = vec!["cpu"];
    if ortho::Engine::adapters(ortho::BackendChoice::Auto).iter().any(|a| a.device_type != "Other") {
        b.push("auto");
    }
    b
}

#[test]
fn favor_verb_matches_the_library() {
    let d = dir("favor");
    let [q, k, v] = inputs(&d, &[2, 3, 20, 8], 5);
    let w = d.join("w.npy");
    for backend in backends() {
        let out = d.join(format!("o-{backend}.npy"));
        let o = ortho(&[
            "favor",
            "--q",
            p(&q),
            "--k",
            p(&k),
            "--v",
            p(&v),
            "--features",
            "16",
            "--seed",
            "4",
            "--save-projection",
            p(&w),
            "--out",
            p(&out),
            "--backend",
            backend,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = load(&out);
        assert_eq!(got.shape(), &[2, 3, 20, 5]);
        let read = |path: &Path| -> Tensor<f64> {
            let bytes = std::fs::read(path).unwrap();
            let f = npyz::NpyFile::new(&bytes[..]).unwrap();
            let shape: Vec<usize> = f.shape().iter().map(|&n| n as usize).collect();
            match f.dtype().descr().trim_matches('\'') {
                "<f8" => Tensor::new(&shape, f.into_vec::<f64>().unwrap()).unwrap(),
                "<f2" => Tensor::new(&shape, f.into_vec::<half::f16>().unwrap().into_iter().map(f64::from).collect())
                    .unwrap(),
                _ => Tensor::new(&shape, f.into_vec::<f32>().unwrap().into_iter().map(f64::from).collect()).unwrap(),
            }
        };
        let qf = read(&q).to_f32().to_f64();
        let want = ortho_ref::favor::favor(&qf, &read(&k), &read(&v), &read(&w), ortho::Kernel::Softmax).unwrap();
        let err = ortho_ref::tensor::relative_frobenius(got.data(), want.data());
        assert!(err < 1e-5, "{backend}: {err:e}");
        // The same projection given back as a file gives the same output.
        let again = d.join("again.npy");
        let o = ortho(&[
            "favor",
            "--q",
            p(&q),
            "--k",
            p(&k),
            "--v",
            p(&v),
            "--projection",
            p(&w),
            "--out",
            p(&again),
            "--backend",
            backend,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(load(&again), got);
    }
}

#[test]
fn causal_favor_verb_matches_the_reference_on_every_schedule() {
    let d = dir("causal");
    let [q, k, v] = inputs(&d, &[1, 2, 45, 8], 4);
    let w = d.join("w.npy");
    let mut outputs = Vec::new();
    for backend in backends() {
        for schedule in ["auto", "parallel", "sequential"] {
            let out = d.join(format!("o-{backend}-{schedule}.npy"));
            let o = ortho(&[
                "favor",
                "--q",
                p(&q),
                "--k",
                p(&k),
                "--v",
                p(&v),
                "--features",
                "16",
                "--save-projection",
                p(&w),
                "--causal",
                "--chunk",
                "16",
                "--schedule",
                schedule,
                "--out",
                p(&out),
                "--backend",
                backend,
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            outputs.push(load(&out));
        }
    }
    for o in &outputs[1..] {
        assert!(ortho_ref::tensor::relative_frobenius(o.data(), outputs[0].data()) < 1e-5);
    }
}

#[test]
fn favor_grad_verb_matches_the_reference() {
    let d = dir("grad");
    let [q, k, v] = inputs(&d, &[1, 2, 12, 4], 3);
    let (w, g) = (d.join("w.npy"), d.join("g.npy"));
    let wv: Vec<f32> = gaussian(8 * 4, 7).iter().map(|&x| x as f32).collect();
    save(&w, &[8, 4], &wv);
    let gv: Vec<f32> = gaussian(2 * 12 * 3, 8).iter().map(|&x| x as f32).collect();
    save(&g, &[1, 2, 12, 3], &gv);
    // Runs favor-grad on `backend` (plus `extra` flags) and loads dq, dk, dv, dw.
    let grads = |backend: &str, extra: &[&str]| {
        let outs = ["dq", "dk", "dv", "dw"].map(|n| d.join(format!("{n}-{backend}{}.npy", extra.len())));
        let mut args = vec!["favor-grad", "--q", p(&q), "--k", p(&k), "--v", p(&v), "--projection", p(&w)];
        args.extend(["--grad-out", p(&g), "--dq", p(&outs[0]), "--dk", p(&outs[1]), "--dv", p(&outs[2])]);
        args.extend(["--dw", p(&outs[3])]);
        args.extend(["--backend", backend]);
        args.extend_from_slice(extra);
        let o = ortho(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        outs.map(|path| load(&path))
    };
    let all: Vec<_> = backends().into_iter().map(|b| grads(b, &[])).collect();
    for set in &all[1..] {
        for (a, b) in set.iter().zip(&all[0]) {
            assert!(ortho_ref::tensor::relative_frobenius(a.data(), b.data()) < 1e-4);
        }
    }
    let settings: [&[&str]; 2] = [&["--causal", "--chunk", "5"], &["--causal", "--chunk", "5", "--checkpoints", "2"]];
    let want = grads("cpu", settings[0]);
    assert_eq!(want[0].shape(), &[1, 2, 12, 4]);
    assert_eq!(want[3].shape(), &[8, 4]);
    for backend in backends() {
        for extra in settings {
            for (a, b) in grads(backend, extra).iter().zip(&want) {
                assert!(ortho_ref::tensor::relative_frobenius(a.data(), b.data()) < 1e-4, "{backend} {extra:?}");
            }
        }
    }
}

#[test]
fn attention_verb_on_2d_inputs() {
    let d = dir("attention");
    let [q, k, v] = inputs(&d, &[30, 4], 3);
    for backend in backends() {
        for causal in [false, true] {
            let out = d.join("o.npy");
            let mut args =
                vec!["attention", "--q", p(&q), "--k", p(&k), "--v", p(&v), "--out", p(&out), "--backend", backend];
            if causal {
                args.push("--causal");
            }
            let o = ortho(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(load(&out).shape(), &[30, 3]);
        }
    }
}

#[test]
fn cwy_verb_writes_q_omega_and_products() {
    let d = dir("cwy");
    let (b, n, l, k) = (2, 9, 4, 3);
    let u_path = d.join("u.npy");
    let x_path = d.join("x.npy");
    let u: Vec<f64> = gaussian(b * n * l, 5);
    let x: Vec<f32> = gaussian(b * n * k, 6).iter().map(|&v| v as f32).collect();
    save(&u_path, &[b, n, l], &u);
    save(&x_path, &[b, n, k], &x);
    let u_ref = Tensor::new(&[b, n, l], u.iter().map(|&v| v as f32 as f64).collect()).unwrap();
    let x_ref = Tensor::new(&[b, n, k], x.iter().map(|&v| v as f64).collect()).unwrap();
    for backend in backends() {
        let out = d.join(format!("q-{backend}.npy"));
        let run = |extra: &[&str]| {
            let mut args = vec!["cwy", "--u", p(&u_path), "--out", p(&out), "--backend", backend];
            args.extend_from_slice(extra);
            let o = ortho(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            load(&out)
        };
        let q = run(&[]);
        let want = ortho_ref::cwy::householder_product(&u_ref).unwrap();
        assert!(ortho_ref::tensor::max_abs_diff(q.data(), want.data()) < 1e-5);
        let omega = run(&["--stiefel"]);
        assert_eq!(omega.shape(), &[b, n, l]);
        for transpose in [false, true] {
            let mut extra = vec!["--apply", p(&x_path)];
            if transpose {
                extra.push("--transpose");
            }
            let y = run(&extra);
            let want = ortho_ref::cwy::apply(&u_ref, &x_ref, transpose).unwrap();
            assert!(ortho_ref::tensor::relative_frobenius(y.data(), want.data()) < 1e-5);
        }
    }
    let zero = d.join("zero.npy");
    save(&zero, &[n, l], &vec![0.0f32; n * l]);
    let o = ortho(&["cwy", "--u", p(&zero), "--out", p(&d.join("z.npy")), "--backend", "cpu"]);
    assert!(!o.status.success() && stderr(&o).contains("vector 0 of batch 0 is zero"), "{}", stderr(&o));
}

#[test]
fn expm_and_cayley_verbs() {
    let d = dir("expm");
    let n = 5;
    let g = gaussian(n * n, 9);
    let skew: Vec<f32> = (0..n * n).map(|e| (g[e] - g[(e % n) * n + e / n]) as f32).collect();
    let input = d.join("a.npy");
    save(&input, &[n, n], &skew);
    let a = Tensor::new(&[n, n], skew.iter().map(|&x| x as f64).collect()).unwrap();
    for backend in backends() {
        for (verb, want) in
            [("expm", ortho_ref::expm::expm_pade13(&a).unwrap()), ("cayley", ortho_ref::expm::cayley(&a).unwrap())]
        {
            let out = d.join(format!("{verb}-{backend}.npy"));
            let o = ortho(&[verb, "--input", p(&input), "--out", p(&out), "--backend", backend]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(
                ortho_ref::tensor::relative_frobenius(load(&out).data(), want.data()) < 1e-5,
                "{verb} on {backend}"
            );
        }
    }
    let bad = d.join("bad.npy");
    save(&bad, &[2, 3], &[0.0f32; 6]);
    let o = ortho(&["expm", "--input", p(&bad), "--out", p(&d.join("o.npy")), "--backend", "cpu"]);
    assert!(!o.status.success() && stderr(&o).contains("a: expected shape [n, n] or [batch, n, n]"), "{}", stderr(&o));
}

#[test]
fn flow_verb_integrates_on_every_backend() {
    let d = dir("flow");
    let n = 4;
    let sym = |seed| {
        let g = gaussian(n * n, seed);
        (0..n * n).map(|e| ((g[e] + g[(e % n) * n + e / n]) / 2.0) as f32).collect::<Vec<f32>>()
    };
    let (qs, ns, w0) = (d.join("qs.npy"), d.join("ns.npy"), d.join("w0.npy"));
    save(&qs, &[n, n], &sym(1));
    save(&ns, &[n, n], &sym(2));
    save(&w0, &[n, n], &(0..n * n).map(|e| if e / n == e % n { 1.0f32 } else { 0.0 }).collect::<Vec<_>>());
    let mut results = Vec::new();
    for backend in backends() {
        for method in ["lie-euler", "cayley-euler", "rkmk4"] {
            let out = d.join(format!("w-{backend}-{method}.npy"));
            let o = ortho(&[
                "flow",
                "--w0",
                p(&w0),
                "--method",
                method,
                "--dt",
                "0.05",
                "--steps",
                "20",
                "--isospectral",
                p(&qs),
                p(&ns),
                "--newton-schulz-every",
                "10",
                "--out",
                p(&out),
                "--backend",
                backend,
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            results.push((method, load(&out)));
        }
    }
    for (method, w) in &results {
        let same: Vec<_> = results.iter().filter(|(m, _)| m == method).collect();
        assert!(ortho_ref::tensor::relative_frobenius(w.data(), same[0].1.data()) < 1e-5);
    }
    // The nested state runs on the CPU reference.
    let (x0, x_out, out) = (d.join("x0.npy"), d.join("x.npy"), d.join("w.npy"));
    save(&x0, &[1, n], &[0.5f32, -0.2, 0.1, 0.3]);
    let o = ortho(&[
        "flow",
        "--w0",
        p(&w0),
        "--method",
        "rkmk4",
        "--dt",
        "0.1",
        "--steps",
        "5",
        "--isospectral",
        p(&qs),
        p(&ns),
        "--x0",
        p(&x0),
        "--activation",
        "tanh",
        "--x-out",
        p(&x_out),
        "--out",
        p(&out),
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(load(&x_out).shape(), &[1, n]);
    let o = ortho(&[
        "flow",
        "--w0",
        p(&w0),
        "--method",
        "lie-euler",
        "--dt",
        "0.1",
        "--steps",
        "5",
        "--isospectral",
        p(&qs),
        p(&w0),
        "--out",
        p(&out),
        "--backend",
        "cpu",
        "--newton-schulz-every",
        "0",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("newton-schulz-every"), "{}", stderr(&o));
}

#[test]
fn devices_and_validate_run() {
    let o = ortho(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ortho(&["validate", "--backend", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("favor softmax") && table.contains("exact causal") && table.contains("cwy gradient"),
        "{table}"
    );
    assert!(table.trim_end().ends_with("passed, 0 failed"), "{table}");
}

/// A tiny sweep (GEMM, CWY and sequential Householder at the quick size, two repeats) on every
/// backend: `results.json` with every field of every record, what it ran on and the ratios of the
/// run, `report.md` (spliced into a file between its markers), the CWY plot with a series per case and
/// backend and the GFLOP/s plot with each backend's GEMM line; the report compared with itself; then a
/// bound no case can meet fails the command, naming the cases.
#[test]
fn bench_writes_its_report_and_fails_on_a_missed_bound() {
    let d = dir("bench");
    let out = d.join("report");
    let page = d.join("BENCHMARKS.md");
    let headline = "<!-- ortho bench headline -->\nold\n<!-- end ortho bench headline -->";
    let text = format!("# Figures\n\n<!-- ortho bench -->\nold\n<!-- end ortho bench -->\n\n{headline}\n\nkept\n");
    std::fs::write(&page, text).unwrap();
    let filter = "^gemm/|cwy L=N |^householder/";
    let o = ortho(&["bench", "--quick", "--filter", filter, "--repeats", "2", "--out", p(&out), "--splice", p(&page)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    for field in ["ortho_version", "unix_time", "date", "command", "machine", "adapters", "records", "ratios"] {
        assert!(json.get(field).is_some(), "{field}: {json}");
    }
    let records = json["records"].as_array().unwrap();
    let gpu = backends().contains(&"auto");
    let mut ran: Vec<&str> = records.iter().map(|r| r["backend"].as_str().unwrap()).collect();
    ran.dedup();
    assert!(ran.contains(&"cpu") && ran.iter().any(|&b| b != "cpu") == gpu, "{ran:?}");
    assert_eq!(records.len(), 3 * ran.len(), "{ran:?}");
    for r in records {
        for field in ["device_median_s", "call_median_s", "gflops", "gbps", "error", "bound"] {
            assert!(r[field].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()), "{field}: {r}");
        }
        assert_eq!(r["pass"], true, "{r}");
        assert!(r["peak_bytes"].is_u64() && r["scratch_bytes"].is_u64() && r["timestamps"].is_boolean(), "{r}");
    }
    let ratios = json["ratios"].as_array().unwrap();
    let kinds = |kind: &str| ratios.iter().filter(|r| r["kind"].as_str().unwrap().starts_with(kind)).count();
    // CWY over Householder on every backend, two kernels against each backend's GEMM, three cases
    // of each GPU backend against the CPU.
    assert_eq!(kinds("CWY time / sequential"), ran.len(), "{ratios:?}");
    assert_eq!(kinds("GFLOP/s / the GEMM"), 2 * ran.len(), "{ratios:?}");
    assert_eq!(kinds("CPU fallback time"), 3 * (ran.len() - 1), "{ratios:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| gemm n=128 |") && report.contains("| cwy L=N N=128 |"), "{report}");
    assert!(report.contains("### CWY time / sequential Householder time") && report.contains("| N=128 |"), "{report}");
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(
        page.starts_with("# Figures\n\n<!-- ortho bench -->\n## ortho bench\n") && !page.contains("\nold\n"),
        "{page}"
    );
    let headline = "<!-- ortho bench headline -->\n`ortho bench --quick";
    assert!(page.contains(headline) && page.contains("#### CWY time") && page.contains("\n### CWY time"), "{page}");
    assert!(page.trim_end().ends_with("x |\n<!-- end ortho bench headline -->\n\nkept"), "{page}");
    let svg = std::fs::read_to_string(out.join("cwy_time.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    for backend in &ran {
        for series in ["cwy L=N", "sequential householder L=N"] {
            assert!(svg.contains(&format!("{series} ({backend})")), "{series} ({backend}) in {svg}");
        }
    }
    assert!(svg.matches("<polyline").count() >= 2 * ran.len() && svg.contains("device time (s)"), "{svg}");
    let svg = std::fs::read_to_string(out.join("kernel_gflops.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("GFLOP/s"), "{svg}");
    for backend in &ran {
        assert!(svg.contains(&format!("{backend} GEMM")) && svg.contains(&format!("{backend} kernels")), "{svg}");
    }
    let results = out.join("results.json");
    let o = ortho(&["bench", "--compare", p(&results), p(&results)]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && table.contains("1.00x"), "{table}{}", stderr(&o));
    assert!(table.contains(&format!("{} cases in both: 0 slower and 0 faster", records.len())), "{table}");
    let o = ortho(&["bench", "--compare", p(&results), p(&d.join("BENCHMARKS.md"))]);
    assert!(!o.status.success() && stderr(&o).contains("not an ortho bench results.json"), "{}", stderr(&o));
    let o = ortho(&[
        "bench",
        "--quick",
        "--filter",
        "^gemm/",
        "--repeats",
        "1",
        "--out",
        p(&out),
        "--bound-scale",
        "1e-12",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cpu gemm n=128: FAIL: error") && stderr(&o).contains("cases failed"),
        "{}",
        stderr(&o)
    );
    let o = ortho(&["bench", "--filter", "(", "--out", p(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("--filter"), "{}", stderr(&o));
}

#[test]
fn bad_inputs_get_clear_errors() {
    let d = dir("errors");
    let [q, k, v] = inputs(&d, &[10, 4], 3);
    let out = d.join("o.npy");
    let run = |extra: &[&str]| -> String {
        let mut args = vec!["favor", "--out", p(&out), "--backend", "cpu"];
        args.extend_from_slice(extra);
        let o = ortho(&args);
        assert!(!o.status.success(), "{extra:?} should fail");
        stderr(&o)
    };
    let missing = d.join("missing.npy");
    assert!(run(&["--q", p(&missing), "--k", p(&k), "--v", p(&v), "--features", "8"]).contains("q ("));
    let strings = d.join("strings.npy");
    raw(&strings, "|S4", false, "(10, 4)", &[b'a'; 160]);
    assert!(
        run(&["--q", p(&strings), "--k", p(&k), "--v", p(&v), "--features", "8"])
            .contains("dtype |S4 is not supported")
    );
    let short = d.join("short.npy");
    save(&short, &[9, 4], &[0.5f32; 36]);
    assert!(
        run(&["--q", p(&q), "--k", p(&short), "--v", p(&v), "--features", "8"]).contains("k: expected shape [10, 4]")
    );
    let nan = d.join("nan.npy");
    let mut vals = vec![0.5f32; 40];
    vals[6] = f32::NAN;
    save(&nan, &[10, 4], &vals);
    assert!(
        run(&["--q", p(&q), "--k", p(&nan), "--v", p(&v), "--features", "8"])
            .contains("k: non-finite value NaN at index [1, 2]")
    );
    let huge = d.join("huge.npy");
    save(&huge, &[10, 4], &[1e300f64; 40]);
    assert!(run(&["--q", p(&huge), "--k", p(&k), "--v", p(&v), "--features", "8"]).contains("does not fit in f32"));
    assert!(
        run(&["--q", p(&q), "--k", p(&k), "--v", p(&v), "--features", "8", "--causal", "--chunk", "0"])
            .contains("chunk size must be at least 1")
    );
    assert!(run(&["--q", p(&q), "--k", p(&k), "--v", p(&v), "--features", "8", "--chunk", "4"]).contains("--causal"));
    assert!(
        run(&["--q", p(&q), "--k", p(&k), "--v", p(&v), "--features", "8", "--causal", "--schedule", "eager"])
            .contains("auto, parallel, sequential")
    );
    assert!(run(&["--q", p(&q), "--k", p(&k), "--v", p(&v), "--features", "0"]).contains("at least 1"));
    assert!(run(&["--q", p(&q), "--k", p(&k), "--v", p(&v)]).contains("--features"));
    assert!(
        run(&["--q", p(&q), "--k", p(&k), "--v", p(&v), "--features", "8", "--kernel", "cosine"])
            .contains("not one of softmax, trig, relu")
    );
    let o = ortho(&["devices", "--backend", "opengl"]);
    assert!(!o.status.success() && stderr(&o).contains("not one of auto, vulkan, gl, metal, dx12, cpu"));
}

/// A `.npy` file written byte by byte: any dtype, order and header, true or not.
fn raw(path: &Path, descr: &str, fortran: bool, shape: &str, data: &[u8]) {
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// One matrix as numpy may save it: C-ordered float32, Fortran-ordered float64 (`np.save(W.T)` of a
/// C array), big-endian float32 and int64: every file gives the same result.
#[test]
fn numpy_layouts_and_dtypes_are_read_alike() {
    let d = dir("layouts");
    let (n, l) = (5, 3);
    let u: Vec<f32> = (0..n * l).map(|e| (e % 7) as f32 - 2.5).collect();
    let ints: Vec<i64> = (0..n * l).map(|e| (e % 7) as i64 - 3).collect();
    let column_major = |i: usize| (i % n) * l + i / n;
    let files = [
        ("c.npy", "<f4", false, u.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()),
        ("f.npy", "<f8", true, (0..n * l).flat_map(|i| (u[column_major(i)] as f64).to_le_bytes()).collect()),
        ("be.npy", ">f4", false, u.iter().flat_map(|x| x.to_be_bytes()).collect()),
        ("i.npy", "<i8", true, (0..n * l).flat_map(|i| ints[column_major(i)].to_le_bytes()).collect()),
    ];
    let mut results = Vec::new();
    for (name, descr, fortran, data) in &files {
        let path = d.join(name);
        raw(&path, descr, *fortran, &format!("({n}, {l})"), data);
        let out = d.join(format!("q-{name}"));
        let o = ortho(&["cwy", "--u", p(&path), "--out", p(&out), "--backend", "cpu"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        results.push(load(&out));
    }
    assert_eq!(results[0].data(), results[1].data(), "Fortran-ordered float64");
    assert_eq!(results[0].data(), results[2].data(), "big-endian float32");
    assert_ne!(results[0].data(), results[3].data(), "int64 holds other values");
    let ints_c = d.join("ints-c.npy");
    raw(&ints_c, "<i8", false, &format!("({n}, {l})"), &ints.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    let out = d.join("q-ints-c.npy");
    assert!(ortho(&["cwy", "--u", p(&ints_c), "--out", p(&out), "--backend", "cpu"]).status.success());
    assert_eq!(load(&out).data(), results[3].data(), "Fortran- and C-ordered int64");
    let inexact = d.join("inexact.npy");
    raw(&inexact, "<i8", false, "(1, 1)", &((1i64 << 40) + 1).to_le_bytes());
    let o = ortho(&["cwy", "--u", p(&inexact), "--out", p(&out), "--backend", "cpu"]);
    assert!(!o.status.success() && stderr(&o).contains("does not fit in f32 exactly"), "{}", stderr(&o));
}

/// Headers that lie about the data: an error naming the file and what is wrong, never a panic or an
/// allocation the size of the claim.
#[test]
fn lying_and_truncated_files_are_refused() {
    let d = dir("lying");
    let out = d.join("o.npy");
    let cases: [(&str, &str, usize, &str); 6] = [
        ("cube.npy", "(1099511627776, 1099511627776, 1099511627776)", 64, "more elements than any file can hold"),
        ("tall.npy", "(4611686018427387904, 2, 2)", 64, "more elements than any file can hold"),
        ("wraps.npy", "(4294967296, 4294967296, 4, 8)", 128, "more elements than any file can hold"),
        ("long.npy", "(1000000, 4)", 64, "the file holds 64 bytes after the header"),
        ("empty.npy", "(3, 3)", 0, "the file holds 0 bytes after the header"),
        ("extra.npy", "(2, 2)", 20, "the file holds 20 bytes after the header"),
    ];
    for (name, shape, bytes, message) in cases {
        let path = d.join(name);
        raw(&path, "<f4", false, shape, &vec![0u8; bytes]);
        for verb in [&["expm", "--input"][..], &["cwy", "--u"][..]] {
            let o = ortho(&[verb[0], verb[1], p(&path), "--out", p(&out), "--backend", "cpu"]);
            assert!(!o.status.success(), "{name}");
            let err = stderr(&o);
            assert!(err.contains(name) && err.contains(message) && !err.contains("panicked"), "{name}: {err}");
        }
    }
    let whole = d.join("whole.npy");
    raw(&whole, "<f4", false, "(2, 2)", &[0u8; 16]);
    let cut = d.join("cut.npy");
    std::fs::write(&cut, &std::fs::read(&whole).unwrap()[..40]).unwrap();
    let o = ortho(&["expm", "--input", p(&cut), "--out", p(&out), "--backend", "cpu"]);
    assert!(!o.status.success() && stderr(&o).contains("ends inside its header"), "{}", stderr(&o));
    assert!(!out.exists(), "no output is written for a failed run");
}

/// A run writes all of its outputs or none: a failure (an unwritable output, a bad input) leaves
/// every existing target as it was, and two outputs may not share a path.
#[test]
fn outputs_are_all_or_nothing() {
    let d = dir("atomic");
    let (l, dim) = (6, 4);
    let [q, k, v] = inputs(&d, &[l, dim], dim);
    let w = d.join("w.npy");
    save(&w, &[8, dim], &gaussian(8 * dim, 9));
    let g = d.join("g.npy");
    save(&g, &[l, dim], &gaussian(l * dim, 10));
    let (dq, dk) = (d.join("dq.npy"), d.join("dk.npy"));
    std::fs::write(&dq, b"old dq").unwrap();
    std::fs::write(&dk, b"old dk").unwrap();
    let grad = |dv: &Path, dk: &Path| {
        let args = ["favor-grad", "--q", p(&q), "--k", p(&k), "--v", p(&v), "--projection", p(&w), "--grad-out"];
        let mut args = args.to_vec();
        args.extend([p(&g), "--dq", p(&dq), "--dk", p(dk), "--dv", p(dv), "--backend", "cpu"]);
        ortho(&args)
    };
    let o = grad(&d.join("missing-dir").join("dv.npy"), &dk);
    assert!(!o.status.success() && stderr(&o).contains("--dv"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&dq).unwrap(), b"old dq");
    assert_eq!(std::fs::read(&dk).unwrap(), b"old dk");
    let o = grad(&dq, &dk);
    assert!(!o.status.success() && stderr(&o).contains("--dq and --dv are the same file"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&dq).unwrap(), b"old dq");
    let o = grad(&d.join("dv.npy"), &dk);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(load(&dq).shape(), &[l, dim]);
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let o = ortho(&[
        "favor",
        "--q",
        p(&q),
        "--k",
        p(&k),
        "--v",
        p(&v),
        "--projection",
        p(&w),
        "--save-projection",
        p(&d.join("s.npy")),
        "--out",
        p(&d.join("o.npy")),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("--save-projection"), "{}", stderr(&o));
}

/// Negative numbers reach the option (and its own check), a backend asked for by name that is not
/// there is an error, and results that are not finite are errors rather than files.
#[test]
fn arguments_backends_and_non_finite_results() {
    let d = dir("misc");
    let out = d.join("o.npy");
    let eye = |scale: f32| (0..9).map(|e| if e % 4 == 0 { scale } else { 0.0 }).collect::<Vec<f32>>();
    let w0 = d.join("w0.npy");
    save(&w0, &[3, 3], &eye(1.0));
    let o = ortho(&[
        "flow",
        "--w0",
        p(&w0),
        "--method",
        "lie-euler",
        "--dt",
        "-0.1",
        "--steps",
        "2",
        "--isospectral",
        p(&w0),
        p(&w0),
        "--out",
        p(&out),
        "--backend",
        "cpu",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("dt"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("unexpected argument"), "{}", stderr(&o));
    // A normal GPU run says which adapter it used and nothing else, with no windowing system about.
    let quiet = d.join("quiet.npy");
    use ortho::BackendChoice::{Gl, Vulkan};
    for (backend, _) in
        [("vulkan", Vulkan), ("gl", Gl)].into_iter().filter(|&(_, b)| !ortho::Engine::adapters(b).is_empty())
    {
        let run = Command::new(env!("CARGO_BIN_EXE_ortho"))
            .args(["expm", "--input", p(&w0), "--out", p(&quiet), "--backend", backend])
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap();
        assert!(run.status.success(), "{backend}: {}", stderr(&run));
        assert_eq!(stderr(&run).lines().count(), 1, "{backend}: {}", stderr(&run));
    }
    for backend in ["metal", "dx12"] {
        let o = ortho(&["expm", "--input", p(&w0), "--out", p(&out), "--backend", backend]);
        assert!(!o.status.success() && stderr(&o).contains("no GPU adapter"), "{backend}: {}", stderr(&o));
    }
    let singular = d.join("two.npy");
    save(&singular, &[3, 3], &eye(2.0));
    let huge = d.join("huge.npy");
    save(&huge, &[3, 3], &eye(1e30));
    for backend in ["cpu", "auto"] {
        let o = ortho(&["cayley", "--input", p(&singular), "--out", p(&out), "--backend", backend]);
        assert!(!o.status.success() && stderr(&o).contains("singular"), "{backend}: {}", stderr(&o));
        let o = ortho(&["expm", "--input", p(&huge), "--out", p(&out), "--backend", backend]);
        assert!(!o.status.success() && stderr(&o).contains("not finite"), "{backend}: {}", stderr(&o));
        assert!(!out.exists());
    }
}

/// A projection larger than the machine can hold is an error, not an abort.
#[test]
fn an_impossible_projection_is_an_error() {
    let d = dir("features");
    let [q, k, v] = inputs(&d, &[6, 8], 4);
    let o = ortho(&[
        "favor",
        "--q",
        p(&q),
        "--k",
        p(&k),
        "--v",
        p(&v),
        "--features",
        "100000000000000",
        "--out",
        p(&d.join("o.npy")),
        "--backend",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("more memory than this machine can allocate"), "{}", stderr(&o));
}

/// `ortho tune` prints a line per GPU adapter and class with a variant the adapter has, and writes
/// the cache file that engines then read; bad classes and an unknown `ORTHO_TUNE` are clear errors.
#[test]
fn tune_prints_and_caches_the_fastest_variant() {
    let d = dir("tune");
    let cache = d.join("tune.json");
    let env = [("ORTHO_TUNE_CACHE", p(&cache))];
    let o = ortho_with(&["tune", "--class", "1,64,64,64", "--class", "4,16t,16,16", "--class", "2,16,16,16,f16"], &env);
    let gpu = backends().contains(&"auto");
    if !gpu {
        assert!(!o.status.success() && stderr(&o).contains("no GPU adapter to tune"), "{}", stderr(&o));
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    // Two rows per adapter, and one of f16 operands on each adapter with SHADER_F16.
    let f16_rows = rows.iter().filter(|r| r.contains(", f16")).count();
    assert_eq!((rows.len() - f16_rows) % 2, 0, "{out}");
    let skipped = stderr(&o).matches("has no SHADER_F16").count();
    assert_eq!(f16_rows + skipped, (rows.len() - f16_rows) / 2, "{out}");
    assert!(!rows.is_empty(), "{out}");
    for row in &rows {
        assert!(ortho::GemmVariant::ALL.iter().any(|v| row.contains(&format!(" {} ", v.name()))), "{row}");
    }
    assert!(rows.iter().any(|r| r.contains("A^T 16x16")), "{out}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), rows.len(), "{json}");

    let bad = ortho_with(&["tune", "--class", "1,64,64"], &env);
    assert!(!bad.status.success() && stderr(&bad).contains("expected batch,m,n,k[,f16]"), "{}", stderr(&bad));
    let x = d.join("x.npy");
    save(&x, &[2, 2], &[0.0f32, 1.0, -1.0, 0.0]);
    let o = ortho_with(&["expm", "--input", p(&x), "--out", p(&d.join("e.npy"))], &[("ORTHO_TUNE", "maybe")]);
    assert!(
        !o.status.success() && stderr(&o).contains("ORTHO_TUNE=maybe: expected on, off or one of tiled-16"),
        "{}",
        stderr(&o)
    );
}

fn load_f64(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = f.shape().iter().map(|&n| n as usize).collect();
    (shape, f.into_vec::<f64>().unwrap())
}

/// Edges as numpy writes them (int64 Fortran-ordered, int32 C-ordered), a batch of float64
/// couplings: log Z and marginals against enumeration, samples as int8, and the errors.
#[test]
fn ising_verb_matches_enumeration() {
    use ortho_ref::ising::{brute, generate};
    let d = dir("ising");
    let n = 11;
    let edges = generate::random_planar(n, 0.8, 4);
    let e = edges.len();
    let fortran: Vec<u8> = (0..2 * e)
        .flat_map(|i| {
            let (u, v) = edges[i % e];
            (if i < e { u as i64 } else { v as i64 }).to_le_bytes()
        })
        .collect();
    let (edges_f, edges_c) = (d.join("edges-f.npy"), d.join("edges-c.npy"));
    raw(&edges_f, "<i8", true, &format!("({e}, 2)"), &fortran);
    let c: Vec<i32> = edges.iter().flat_map(|&(u, v)| [u as i32, v as i32]).collect();
    save(&edges_c, &[e, 2], &c);
    let batch = 3;
    let j: Vec<f64> = ortho_ref::ising::generate::couplings(batch * e, 1e-3, 3.0, 5);
    let couplings = d.join("j.npy");
    save(&couplings, &[batch, e], &j);
    let runs = [(&edges_f, "Fortran int64", "cpu"), (&edges_c, "C int32", "cpu")];
    let gpu = backends().contains(&"auto").then_some((&edges_c, "C int32 on the GPU", "auto"));
    for (edges_path, name, backend) in runs.into_iter().chain(gpu) {
        let (z, m) = (d.join("z.npy"), d.join("m.npy"));
        let args =
            ["ising", "--edges", p(edges_path), "--couplings", p(&couplings), "--log-z", p(&z), "--marginals", p(&m)];
        let o = ortho(&[&args[..], &["--backend", backend]].concat());
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let (z_shape, log_z) = load_f64(&z);
        let (m_shape, marginals) = load_f64(&m);
        assert_eq!((z_shape, m_shape), (vec![batch], vec![batch, e]));
        // f64 on the CPU; the GPU factors in f32 (docs/math.md §6.7).
        let tolerance = if backend == "cpu" { 1e-10 } else { 1e-5 };
        for b in 0..batch {
            let (want_z, want_m) = brute::infer(n, &edges, &j[b * e..(b + 1) * e]);
            assert!((log_z[b] - want_z).abs() < tolerance * want_z.abs(), "{name} set {b}");
            for k in 0..e {
                assert!((marginals[b * e + k] - want_m[k]).abs() < tolerance, "{name} set {b} edge {k}");
            }
        }
    }
    // One set: a 0-d log Z; samples are int8 +-1, [K, N], reproducible from the seed.
    let one = d.join("one.npy");
    save(&one, &[e], &j[..e]);
    let (z, s1, s2) = (d.join("z1.npy"), d.join("s1.npy"), d.join("s2.npy"));
    for s in [&s1, &s2] {
        let args = [
            "ising",
            "--edges",
            p(&edges_c),
            "--couplings",
            p(&one),
            "--log-z",
            p(&z),
            "--samples",
            "20",
            "--seed",
            "9",
            "--out",
            p(s),
        ];
        let o = ortho(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(load_f64(&z).0, Vec::<usize>::new());
    let bytes = std::fs::read(&s1).unwrap();
    assert_eq!(bytes, std::fs::read(&s2).unwrap(), "the same seed, the same samples");
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(f.shape(), &[20, n as u64]);
    assert!(f.into_vec::<i8>().unwrap().iter().all(|&s| s == 1 || s == -1));
    // Errors: each names what is wrong, and nothing is written.
    let fails = |args: &[&str], needle: &str| {
        let o = ortho(args);
        assert!(!o.status.success() && stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    };
    let loop_edges = d.join("loop.npy");
    save(&loop_edges, &[2, 2], &[0i64, 1, 1, 1]);
    let two = d.join("two.npy");
    save(&two, &[2], &[0.5f64, 0.5]);
    let z_bad = d.join("never.npy");
    fails(
        &["ising", "--edges", p(&loop_edges), "--couplings", p(&two), "--log-z", p(&z_bad)],
        "edge 1 = (1, 1) is a self-loop",
    );
    fails(&["ising", "--edges", p(&edges_c), "--couplings", p(&two), "--log-z", p(&z_bad)], "one per edge");
    fails(&["ising", "--edges", p(&couplings), "--couplings", p(&two), "--log-z", p(&z_bad)], "not an integer type");
    fails(&["ising", "--edges", p(&edges_c), "--couplings", p(&one), "--samples", "3"], "--samples needs --out");
    fails(
        &["ising", "--edges", p(&edges_c), "--couplings", p(&couplings), "--samples", "3", "--out", p(&z_bad)],
        "draws from one model",
    );
    if gpu.is_some() {
        let grid: Vec<i64> = generate::grid(20, 20).iter().flat_map(|&(u, v)| [u as i64, v as i64]).collect();
        let (grid_path, grid_j) = (d.join("grid.npy"), d.join("grid-j.npy"));
        save(&grid_path, &[grid.len() / 2, 2], &grid);
        save(&grid_j, &[grid.len() / 2], &vec![0.5f64; grid.len() / 2]);
        // Past the dense path's order: the GPU's multifrontal QR, log Z and marginals as the CPU's.
        let (z_gpu, m_gpu, z_cpu, m_cpu) = (d.join("gz.npy"), d.join("gm.npy"), d.join("cz.npy"), d.join("cm.npy"));
        let common = ["ising", "--edges", p(&grid_path), "--couplings", p(&grid_j), "--log-z"];
        let o = ortho(&[&common[..], &[p(&z_gpu), "--marginals", p(&m_gpu), "--backend", "auto"]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let o = ortho(&[&common[..], &[p(&z_cpu), "--marginals", p(&m_cpu)]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let (gz, cz) = (load_f64(&z_gpu).1[0], load_f64(&z_cpu).1[0]);
        assert!((gz - cz).abs() < 1e-5 * cz, "{gz} vs {cz}");
        for (g, c) in load_f64(&m_gpu).1.iter().zip(load_f64(&m_cpu).1) {
            assert!((g - c).abs() < 1e-5, "{g} vs {c}");
        }
    }
    let k5: Vec<i64> = (0..5).flat_map(|u| (u + 1..5).flat_map(move |v| [u, v])).collect();
    let k5_path = d.join("k5.npy");
    save(&k5_path, &[10, 2], &k5);
    let ten = d.join("ten.npy");
    save(&ten, &[10], &[0.1f64; 10]);
    // K5 is a small non-planar part: both solvers enumerate it (the GPU in f32).
    let k5_edges: Vec<(usize, usize)> = k5.chunks(2).map(|c| (c[0] as usize, c[1] as usize)).collect();
    let (want_z, want_m) = brute::infer(5, &k5_edges, &[0.1; 10]);
    for (backend, tolerance) in [("cpu", 1e-12)].into_iter().chain(gpu.map(|_| ("auto", 1e-5))) {
        let (k5_z, k5_m) = (d.join("k5-z.npy"), d.join("k5-m.npy"));
        let args = ["ising", "--edges", p(&k5_path), "--couplings", p(&ten), "--log-z", p(&k5_z)];
        let o = ortho(&[&args[..], &["--marginals", p(&k5_m), "--backend", backend]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!((load_f64(&k5_z).1[0] - want_z).abs() < tolerance * want_z, "{backend}");
        for (got, want) in load_f64(&k5_m).1.iter().zip(&want_m) {
            assert!((got - want).abs() < tolerance, "{backend}: {got} vs {want}");
        }
    }
    // The 5 x 5 torus is outside the family: the error names the part.
    let torus: Vec<i64> = (0..25i64).flat_map(|v| [v, (v / 5) * 5 + (v + 1) % 5, v, (v + 5) % 25]).collect();
    let torus_path = d.join("torus.npy");
    save(&torus_path, &[50, 2], &torus);
    let fifty = d.join("fifty.npy");
    save(&fifty, &[50], &[0.1f64; 50]);
    fails(
        &["ising", "--edges", p(&torus_path), "--couplings", p(&fifty), "--log-z", p(&z_bad)],
        "a part of 25 vertices",
    );
    let nan = d.join("nan.npy");
    save(&nan, &[2], &[0.5f64, f64::NAN]);
    let path = d.join("path.npy");
    save(&path, &[2, 2], &[0i64, 1, 1, 2]);
    fails(
        &["ising", "--edges", p(&path), "--couplings", p(&nan), "--log-z", p(&z_bad)],
        "non-finite value NaN at index [1]",
    );
    assert!(!z_bad.exists());
}

#[test]
fn bilevel_verb_matches_the_library() {
    use ortho_ref::bilevel::{self, Estimator, InnerLoop, Method, Quadratic, Sgd};
    let d = dir("bilevel");
    let (t, n) = (3, 2);
    // Symmetric positive definite matrices per task, and targets.
    let a: Vec<f64> = (0..t).flat_map(|k| [2.0 + k as f64, 0.3, 0.3, 1.0]).collect();
    let b: Vec<f64> = (0..t).flat_map(|k| [1.0, -0.2 * k as f64, -0.2 * k as f64, 0.5 + k as f64]).collect();
    let c = gaussian(t * n, 3);
    let target = gaussian(t * n, 4);
    let paths: Vec<PathBuf> = ["a", "c", "b", "t", "theta0"].iter().map(|s| d.join(format!("{s}.npy"))).collect();
    save(&paths[0], &[t, n, n], &a);
    save(&paths[1], &[t, n], &c);
    save(&paths[2], &[t, n, n], &b);
    // The outer targets as numpy writes a transposed array: Fortran order.
    let fortran: Vec<u8> = (0..t * n).flat_map(|i| target[(i % t) * n + i / t].to_le_bytes()).collect();
    raw(&paths[3], "<f8", true, &format!("({t}, {n})"), &fortran);
    save(&paths[4], &[n], &[0.5f64, -0.5]);
    let tasks: Vec<Quadratic> = (0..t)
        .map(|k| {
            let m = |v: &[f64], s: usize| v[k * s..(k + 1) * s].to_vec();
            Quadratic::new("task", n, m(&a, 4), m(&c, 2), m(&b, 4), m(&target, 2)).unwrap()
        })
        .collect();
    let inputs = [
        "bilevel",
        "--inner-matrices",
        p(&paths[0]),
        "--inner-targets",
        p(&paths[1]),
        "--outer-matrices",
        p(&paths[2]),
        "--outer-targets",
        p(&paths[3]),
        "--theta0",
        p(&paths[4]),
        "--inner-steps",
        "4",
        "--inner-lr",
        "0.2",
    ];
    let inner = InnerLoop { steps: 4, lr: 0.2 };
    let out = d.join("theta.npy");
    let run =
        [&inputs[..], &["--outer-lr", "0.1", "--outer-steps", "30", "--method", "exact", "--tasks-per-step", "2"]]
            .concat();
    let o = ortho(&[&run[..], &["--seed", "5", "--out", p(&out)]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, trajectory) = load_f64(&out);
    assert_eq!(shape, vec![31, n]);
    let mut sgd = Sgd::new(&tasks, inner, 0.1, 2, 6);
    let mut estimator = Estimator::new(Method::Exact, 5).unwrap();
    let (want, _) = bilevel::sgd(&mut sgd, &[0.5, -0.5], 30, &mut estimator);
    for (x, y) in trajectory.iter().zip(want.concat()) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    // Estimates at theta0: UFOM's mean is the exact mean gradient within 5 standard errors.
    let grads = d.join("grads.npy");
    let o = ortho(
        &[&inputs[..], &["--method", "ufom", "--q", "0.25", "--estimates", "4000", "--grads-out", p(&grads)]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, g) = load_f64(&grads);
    assert_eq!(shape, vec![4000, n]);
    for i in 0..n {
        let exact = tasks.iter().map(|task| bilevel::exact(task, &[0.5, -0.5], inner)[i]).sum::<f64>() / t as f64;
        let column: Vec<f64> = g.chunks(n).map(|r| r[i]).collect();
        let mean = column.iter().sum::<f64>() / 4000.0;
        let se = (column.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4000.0 / 4000.0).sqrt();
        assert!((mean - exact).abs() < 5.0 * se, "coordinate {i}: {mean} vs {exact} (se {se})");
    }
    // Errors name what is wrong, and nothing is written.
    let never = d.join("never.npy");
    let fails = |extra: &[&str], needle: &str| {
        let o = ortho(&[&inputs[..], extra, &["--outer-steps", "3", "--out", p(&never)]].concat());
        assert!(!o.status.success() && stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    };
    fails(&["--method", "ufom", "--q", "1.5"], "(0, 1]");
    fails(&["--method", "ufom"], "needs --q");
    fails(&["--method", "fom", "--q", "0.5"], "--q is for --method ufom");
    // A bad array in place of one input (`slot` is the position of its path in `inputs`).
    let bad = d.join("bad.npy");
    let fails_with = |slot: usize, needles: &[&str]| {
        let mut args = inputs.to_vec();
        args[slot] = p(&bad);
        let o = ortho(&[&args[..], &["--method", "fom", "--outer-steps", "3", "--out", p(&never)]].concat());
        assert!(!o.status.success() && needles.iter().all(|x| stderr(&o).contains(x)), "{needles:?}: {}", stderr(&o));
    };
    save(&bad, &[t, n, n], &[&a[..4], &[1.0, 2.0, 2.0, 1.0], &a[8..]].concat());
    fails_with(6, &["task 1 outer matrix", "not positive definite"]);
    save(&bad, &[t, n, n], &[&a[..4], &[1.0, 0.2, 0.3, 1.0], &a[8..]].concat());
    fails_with(2, &["task 1 inner matrix", "not symmetric"]);
    save(&bad, &[t, n], &c);
    fails_with(2, &["expected shape [T, 2, 2]"]);
    assert!(!never.exists());
}

#[test]
fn express_verb_writes_inputs_that_pass_the_check() {
    use ortho_ref::express::{Achieved, Pattern, Tolerances, check};
    let d = dir("express");
    let len = 40;
    // Two nonzeros per row, as numpy writes a transposed float32 array (Fortran order).
    let a: Vec<f64> = (0..len * len)
        .map(|e| {
            let (i, j) = (e / len, e % len);
            if j == (i * 3 + 1) % len || j == (i + 7) % len { 0.2 + (i % 5) as f64 * 0.2 } else { 0.0 }
        })
        .collect();
    let pattern_path = d.join("a.npy");
    let fortran: Vec<u8> = (0..len * len).flat_map(|e| (a[(e % len) * len + e / len] as f32).to_le_bytes()).collect();
    raw(&pattern_path, "<f4", true, &format!("({len}, {len})"), &fortran);
    let [x, wq, wk] = ["x", "wq", "wk"].map(|s| d.join(format!("{s}.npy")));
    let args = ["express", "--pattern", p(&pattern_path), "--epsilon", "0.5", "--delta", "0.05"];
    let outs = ["--x", p(&x), "--wq", p(&wq), "--wk", p(&wk)];
    let o = ortho(&[&args[..], &["--seed", "2"], &outs[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(printed.contains("N = 2") && printed.contains("tries"), "{printed}");
    let f64s = |t: Tensor<f32>| t.to_f64();
    let (x, wq, wk) = (f64s(load(&x)), f64s(load(&wq)), f64s(load(&wk)));
    let dim = wq.shape()[1];
    assert_eq!((x.shape(), wq.shape()), (&[len, 2 * dim][..], &[2 * dim, dim][..]));
    assert!(printed.contains(&format!("d = {dim}")), "{printed}");
    let pattern = Pattern::from_dense(&Tensor::new(&[len, len], a.clone()).unwrap()).unwrap();
    let rows = check(&pattern, &x, &wq, &wk).unwrap();
    let got = Achieved::worst(rows.data().chunks(2).map(|r| [r[0], r[1]]));
    assert!(got.meets(Tolerances::new(0.5, 0.05).unwrap()), "{got:?}");
    // A 0/1 adjacency pattern as int64, at a given d: the same check passes.
    let ones: Vec<i64> = a.iter().map(|&v| i64::from(v > 0.0)).collect();
    let int_path = d.join("adjacency.npy");
    save(&int_path, &[len, len], &ones);
    let o = ortho(
        &[&["express", "--pattern", p(&int_path), "--epsilon", "0.5", "--delta", "0.05", "--dim", "6"][..], &outs[..]]
            .concat(),
    );
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("d = 6"), "{}", stderr(&o));
    let adjacency = Tensor::new(&[len, len], ones.iter().map(|&v| v as f64).collect()).unwrap();
    let rows = check(
        &Pattern::from_dense(&adjacency).unwrap(),
        &f64s(load(&d.join("x.npy"))),
        &f64s(load(&d.join("wq.npy"))),
        &f64s(load(&d.join("wk.npy"))),
    );
    assert!(
        Achieved::worst(rows.unwrap().data().chunks(2).map(|r| [r[0], r[1]]))
            .meets(Tolerances::new(0.5, 0.05).unwrap())
    );
    // Errors name what is wrong, and nothing is written.
    let [never, never2, never3] = ["never", "never2", "never3"].map(|s| d.join(format!("{s}.npy")));
    let bad = d.join("bad.npy");
    let fails = |extra: &[&str], needle: &str| {
        let o = ortho(
            &[
                &["express", "--pattern", p(&bad)][..],
                extra,
                &["--x", p(&never), "--wq", p(&never2), "--wk", p(&never3)],
            ]
            .concat(),
        );
        assert!(!o.status.success() && stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    };
    save(&bad, &[2, 2], &[1.0f64, -1.0, 0.0, 1.0]);
    fails(&["--epsilon", "0.5", "--delta", "0.05"], "nonnegative");
    save(&bad, &[2, 3], &[1.0f64; 6]);
    fails(&["--epsilon", "0.5", "--delta", "0.05"], "square");
    save(&bad, &[2, 2], &[1.0f64, 0.0, 0.0, 0.0]);
    fails(&["--epsilon", "0.5", "--delta", "0.05"], "row 1 has no nonzero");
    save(&bad, &[2, 2], &[1.0f64, 0.0, 0.0, 1.0]);
    fails(&["--epsilon", "0.5", "--delta", "1.5"], "(0, 1)");
    fails(&["--epsilon", "0.5", "--delta", "0.05", "--method", "sparse"], "paper, optimized");
    assert!(!never.exists() && !never2.exists() && !never3.exists());
}

/// `--dtype f16`: inputs of any dtype read as f16, the work in f16 storage, f16 files written; the
/// same values as the library's `run_f16`; a value past f16's range refused by name.
#[test]
fn dtype_f16_reads_and_writes_f16() {
    let d = dir("dtype-f16");
    let [q, k, v] = inputs(&d, &[1, 2, 20, 8], 5);
    let u = d.join("u.npy");
    save(&u, &[12, 5], &gaussian(60, 9));
    let read_f16 = |path: &Path| -> Tensor<half::f16> {
        let bytes = std::fs::read(path).unwrap();
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(f.dtype().descr().trim_matches('\''), "<f2", "{}", path.display());
        let shape: Vec<usize> = f.shape().iter().map(|&n| n as usize).collect();
        Tensor::new(&shape, f.into_vec::<half::f16>().unwrap()).unwrap()
    };
    let as_f16 = |path: &Path, shape: &[usize]| -> Tensor<half::f16> {
        let bytes = std::fs::read(path).unwrap();
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        let data: Vec<f64> = match f.dtype().descr().trim_matches('\'') {
            "<f8" => f.into_vec::<f64>().unwrap(),
            "<f2" => f.into_vec::<half::f16>().unwrap().into_iter().map(f64::from).collect(),
            _ => f.into_vec::<f32>().unwrap().into_iter().map(f64::from).collect(),
        };
        Tensor::new(shape, data).unwrap().to_f16()
    };
    for backend in backends() {
        let engine = ortho::Engine::with_options(&ortho::EngineOptions {
            backend: backend.parse().unwrap(),
            tune: ortho::TuneOptions { mode: ortho::TuneMode::Off, cache: None },
            ..ortho::EngineOptions::default()
        })
        .unwrap();
        let (out, w) = (d.join(format!("o-{backend}.npy")), d.join(format!("w-{backend}.npy")));
        let args = ["favor", "--q", p(&q), "--k", p(&k), "--v", p(&v), "--features", "16", "--save-projection"];
        let o = ortho(&[&args[..], &[p(&w), "--out", p(&out), "--dtype", "f16", "--backend", backend]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let (got, w) = (read_f16(&out), read_f16(&w));
        let inputs = [as_f16(&q, &[1, 2, 20, 8]), as_f16(&k, &[1, 2, 20, 8]), as_f16(&v, &[1, 2, 20, 5]), w];
        let op = ortho::ops::Favor(ortho::FavorOptions::new(ortho::Kernel::Softmax));
        let want = engine.run_f16(&op, &inputs.iter().collect::<Vec<_>>()).unwrap().remove(0);
        assert_eq!(got, want, "{backend}: favor");

        let out = d.join(format!("cwy-{backend}.npy"));
        let o = ortho(&["cwy", "--u", p(&u), "--out", p(&out), "--dtype", "f16", "--backend", backend]);
        assert!(o.status.success(), "{}", stderr(&o));
        let want = engine.run_f16(&ortho::ops::Cwy::default(), &[&as_f16(&u, &[12, 5])]).unwrap().remove(0);
        assert_eq!(read_f16(&out), want, "{backend}: cwy");
    }
    let big = d.join("big.npy");
    save(&big, &[2, 2], &[1.0f64, 2.0, 7.0e4, 3.0]);
    let o = ortho(&["expm", "--input", p(&big), "--out", p(&d.join("e.npy")), "--dtype", "f16"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("7e4 at flat index 2 does not fit in f16 (largest 65504)"), "{}", stderr(&o));
    let o = ortho(&["expm", "--input", p(&big), "--out", p(&d.join("e.npy")), "--dtype", "bf16"]);
    assert!(!o.status.success() && stderr(&o).contains("'bf16' is not one of f32, f16"), "{}", stderr(&o));
}
