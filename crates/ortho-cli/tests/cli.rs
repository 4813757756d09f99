//! The `ortho` binary end to end: .npy in and out, every verb, and clear errors for bad input.
use npyz::WriterBuilder;
use ortho::Tensor;
use ortho::random::Gaussian;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ortho(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ortho")).args(args).output().expect("the ortho binary runs")
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
    let ints = d.join("ints.npy");
    save(&ints, &[10, 4], &[1i32; 40]);
    assert!(
        run(&["--q", p(&ints), "--k", p(&k), "--v", p(&v), "--features", "8"]).contains("dtype <i4 is not supported")
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
