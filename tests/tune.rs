//! Tuning: every GEMM variant an adapter runs gives the engine's results up to float rounding, the
//! tuner times them all and keeps the fastest, and its cache file is keyed by adapter.
mod common;
use common::*;
use ortho::{
    Engine, EngineOptions, FavorOptions, GemmClass, GemmVariant, Kernel, MatmulOptions, TuneMode, TuneOptions,
};

/// `engine`'s name (for messages) and a fresh cache file for the test `tag` on it.
fn fresh_cache(engine: &Engine, tag: &str) -> (String, std::path::PathBuf) {
    let name = engine.describe().replace([' ', '/'], "_");
    let dir = std::env::temp_dir().join(format!("ortho-tune-test-{}-{name}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("tune.json");
    let _ = std::fs::remove_file(&cache);
    (name, cache)
}

/// `result` holds a time for every variant `engine` supports, in the order tuning times them.
fn assert_timed_every_variant(engine: &Engine, result: &ortho::TuneResult, name: &str) {
    let timed: Vec<&str> = result.seconds.iter().map(|(v, _)| v.as_str()).collect();
    let supported: Vec<String> = engine.gemm_variants().iter().map(|v| v.name()).collect();
    assert_eq!(timed, supported, "{name}");
}

/// An engine like `engine` (same adapter) that tunes into `cache`.
fn tuning_engine(engine: &Engine, cache: &std::path::Path) -> Engine {
    tuning_engine_as(engine, cache, TuneMode::On)
}

fn tuning_engine_as(engine: &Engine, cache: &std::path::Path, mode: TuneMode) -> Engine {
    let e = Engine::with_options(&EngineOptions {
        backend: engine.describe().split(" / ").next().unwrap().to_lowercase().parse().unwrap(),
        adapter_name: engine.describe().split(" / ").nth(1).map(String::from),
        require_gpu: true,
        tune: TuneOptions { mode, cache: Some(cache.to_path_buf()) },
    })
    .unwrap();
    assert_eq!(e.describe(), engine.describe());
    e
}

/// FAVOR+ in both directions (the ones column of the denominator, also just past a 64-wide tile at
/// dv = 64, accumulating and split products) under every variant: within float rounding of the
/// default variant and of the f64 twin.
#[test]
fn every_variant_keeps_attention_results() {
    for s in [(1, 2, 65, 16, 9, 64), (1, 1, 70, 16, 64, 32)] {
        let (_, h, _, d, _, m) = s;
        let [q, k, v] = attention_inputs(s, 0.5, 7);
        let w = case_projection(0, h, m, d);
        for engine in gpu_engines() {
            for causal in [false, true] {
                let o = FavorOptions { causal, chunk: Some(16), ..FavorOptions::new(Kernel::Softmax) };
                let want = Engine::reference().favor(&q, &k, &v, &w, &o).unwrap();
                engine.force_gemm_variant(Some(GemmVariant::DEFAULT)).unwrap();
                let default = engine.favor(&q, &k, &v, &w, &o).unwrap();
                for variant in engine.gemm_variants() {
                    engine.force_gemm_variant(Some(variant)).unwrap();
                    let got = engine.favor(&q, &k, &v, &w, &o).unwrap();
                    let to_default = relative_frobenius(got.data(), default.data());
                    let to_reference = relative_frobenius(got.data(), want.data());
                    let what = format!("{} {} {s:?} causal {causal}", engine.describe(), variant.name());
                    assert!(to_default < 1e-5 && to_reference < 1e-5, "{what}: {to_default:e}, {to_reference:e}");
                }
            }
            engine.force_gemm_variant(None).unwrap();
        }
    }
}

#[test]
fn variants_are_named_and_unsupported_ones_refused() {
    for v in GemmVariant::ALL {
        assert_eq!(GemmVariant::parse(&v.name()), Some(v));
    }
    assert_eq!(GemmVariant::parse("tiled-7"), None);
    for engine in gpu_engines() {
        let supported = engine.gemm_variants();
        assert!(supported.contains(&GemmVariant::DEFAULT), "{}", engine.describe());
        for v in GemmVariant::ALL.into_iter().filter(|v| !supported.contains(v)) {
            let err = engine.force_gemm_variant(Some(v)).unwrap_err().to_string();
            assert!(err.contains(&v.name()), "{err}");
        }
    }
    let err = Engine::cpu("no GPU").force_gemm_variant(Some(GemmVariant::DEFAULT)).unwrap_err().to_string();
    assert!(err.contains("needs a GPU"), "{err}");
}

/// Tuning times every supported variant, keeps the fastest, writes it to the cache file, and a new
/// engine on the same adapter reads it back instead of tuning; entries of other adapters are ignored.
#[test]
fn tuning_keeps_the_fastest_variant_per_adapter() {
    for engine in gpu_engines() {
        let (name, cache) = fresh_cache(&engine, "fastest");
        let tuner = tuning_engine(&engine, &cache);
        let class = GemmClass::new(1, 64, 64, 64, false, false);
        let result = tuner.tune_gemm(class).unwrap();
        assert_timed_every_variant(&engine, &result, &name);
        let fastest = result.seconds.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(result.chosen, fastest.0);
        assert!(result.seconds.iter().all(|(_, s)| s.is_finite() && *s > 0.0), "{result:?}");

        // The products of the class run in the chosen variant, with the reference's results.
        let a = gaussian(&[40, 50], 1.0, 1);
        let b = gaussian(&[50, 60], 1.0, 2);
        let got = tuner.matmul(&a, &b, MatmulOptions::default()).unwrap();
        let want = Engine::reference().matmul(&a, &b, MatmulOptions::default()).unwrap();
        assert!(relative_frobenius(got.data(), want.data()) < 1e-6);
        let chosen = GemmVariant::parse(&result.chosen).unwrap();
        assert_eq!(tuner.gemm_variant(class).unwrap(), chosen);

        // A new engine reads the file: an edited choice for this adapter wins; another adapter's
        // entry (naming no variant at all) for a class this one has not met is not taken.
        let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
        let entries = file["entries"].as_array_mut().unwrap();
        assert_eq!(entries.len(), 1);
        let other = if chosen == GemmVariant::DEFAULT { GemmVariant::Tiled { depth: 8 } } else { GemmVariant::DEFAULT };
        entries[0]["result"]["chosen"] = other.name().into();
        let mut foreign = entries[0].clone();
        foreign["adapter"] = "Vulkan / another GPU".into();
        foreign["result"]["chosen"] = "no-such-variant".into();
        foreign["result"]["class"]["k"] = 1.into();
        entries.push(foreign);
        std::fs::write(&cache, file.to_string()).unwrap();
        let reader = tuning_engine(&engine, &cache);
        assert_eq!(reader.gemm_variant(class).unwrap(), other, "{name}");
        let small = GemmClass::new(1, 64, 64, 4, false, false);
        assert!(reader.gemm_variant(small).is_ok(), "{name}: took another adapter's entry");
        let _ = std::fs::remove_file(&cache);
    }
}

/// The first product of a class recorded into an application's own encoder, between its other
/// commands, tunes first (submitting its own timing work) and still lands in that encoder; four
/// threads meeting another new class at once all get the product, and the class is cached once.
#[test]
fn tuning_inside_an_applications_encoder_and_from_threads() {
    for engine in gpu_engines() {
        let (name, cache) = fresh_cache(&engine, "app");
        let tuner = tuning_engine(&engine, &cache);
        let reference = Engine::reference();
        let (a, b) = (gaussian(&[33, 20], 1.0, 3), gaussian(&[20, 17], 1.0, 4));
        let (ga, gb, gc) =
            (tuner.upload("a", &a).unwrap(), tuner.upload("b", &b).unwrap(), tuner.empty(&[33, 17]).unwrap());
        let (device, queue) = (tuner.device().unwrap(), tuner.queue().unwrap());
        let other = device.create_buffer(&ortho::wgpu::BufferDescriptor {
            label: Some("the application's"),
            size: 256,
            usage: ortho::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&other, 0, None);
        let recorded = tuner.record_matmul(&mut encoder, &ga, &gb, &gc, MatmulOptions::default()).unwrap();
        encoder.clear_buffer(&other, 0, None);
        queue.submit([encoder.finish()]);
        recorded.submitted();
        let want = reference.matmul(&a, &b, MatmulOptions::default()).unwrap();
        assert!(relative_frobenius(tuner.download(&gc).unwrap().data(), want.data()) < 1e-6, "{name}");

        let (a, b) = (gaussian(&[2, 300, 10], 1.0, 5), gaussian(&[10, 70], 1.0, 6));
        let want = reference.matmul(&a, &b, MatmulOptions::default()).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let got = tuner.matmul(&a, &b, MatmulOptions::default()).unwrap();
                    assert!(relative_frobenius(got.data(), want.data()) < 1e-6, "{name}");
                });
            }
        });
        let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
        let classes: Vec<&serde_json::Value> =
            file["entries"].as_array().unwrap().iter().map(|e| &e["result"]["class"]).collect();
        assert_eq!(classes.len(), 2, "{name}: {classes:?}");
        assert_ne!(classes[0], classes[1]);
        let _ = std::fs::remove_file(&cache);
    }
}

/// Causal attention given no chunk takes the one tuning chose for its class: every candidate timed
/// once, the fastest kept and cached, a new engine reading the cache (an edited choice wins, bit
/// for bit the same as asking for that chunk); with tuning off, the default chunk. (The products use
/// one pinned variant, so that only the chunk is tuned.)
#[test]
fn the_causal_chunk_is_tuned_per_class() {
    use ortho::{CHUNK_CANDIDATES, ChunkClass, DEFAULT_CHUNK, Schedule};
    let (l, d, dv, m) = (300, 16, 8, 32);
    let [q, k, v] = attention_inputs((1, 1, l, d, dv, m), 0.5, 1);
    let w = ortho::random::projection(m, d, ortho::random::Scaling::Chi, 2).unwrap().to_f32();
    let causal = FavorOptions::causal(Kernel::Softmax);
    let want =
        ortho_ref::favor::favor_quadratic(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), Kernel::Softmax, true)
            .unwrap();
    let with_chunk =
        |e: &Engine, c: usize| e.favor(&q, &k, &v, &w, &FavorOptions { chunk: Some(c), ..causal }).unwrap();
    for engine in gpu_engines() {
        let (name, cache) = fresh_cache(&engine, "chunk");
        let pinned = TuneMode::Fixed(GemmVariant::DEFAULT);
        let tuner = tuning_engine_as(&engine, &cache, pinned);
        let got = tuner.favor(&q, &k, &v, &w, &causal).unwrap();
        assert!(relative_frobenius(got.data(), want.data()) < 1e-5, "{name}");
        let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
        let chunks = file["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 1, "{name}: one class met");
        let result: ortho::ChunkResult = serde_json::from_value(chunks[0]["result"].clone()).unwrap();
        assert_eq!(result.class, ChunkClass::new(Kernel::Softmax, d, m, dv, Schedule::Auto));
        let timed: Vec<usize> = result.seconds.iter().map(|(c, _)| *c).collect();
        assert_eq!(timed, CHUNK_CANDIDATES);
        let fastest = result.seconds.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        assert_eq!(result.chosen, fastest, "{name}");
        assert_eq!(got.data(), with_chunk(&tuner, result.chosen).data(), "{name}: the chosen chunk");

        let edited = if result.chosen == 16 { 32 } else { 16 };
        let mut file = file.clone();
        file["chunks"][0]["result"]["chosen"] = edited.into();
        std::fs::write(&cache, file.to_string()).unwrap();
        let reader = tuning_engine_as(&engine, &cache, pinned);
        let got = reader.favor(&q, &k, &v, &w, &causal).unwrap();
        assert_eq!(got.data(), with_chunk(&reader, edited).data(), "{name}: the cached choice");
        assert_eq!(engine.favor(&q, &k, &v, &w, &causal).unwrap().data(), with_chunk(&engine, DEFAULT_CHUNK).data());
        let _ = std::fs::remove_file(&cache);
    }
}

/// Products of f16 operands are a class of their own: tuned over every variant in its f16 form
/// where the adapter has `SHADER_F16`, cached beside the f32 class of the same shape, refused by
/// name elsewhere. A cache entry written before the classes had a dtype reads as f32.
#[test]
fn f16_operands_are_a_class_of_their_own() {
    for engine in gpu_engines() {
        let (name, cache) = fresh_cache(&engine, "f16");
        let tuner = tuning_engine(&engine, &cache);
        let f32_class = GemmClass::new(1, 64, 64, 64, false, false);
        let class = f32_class.with_f16_inputs();
        assert!(class.describe().ends_with(", f16") && class != f32_class);
        if !engine.has_shader_f16() {
            let err = tuner.tune_gemm(class).unwrap_err().to_string();
            assert!(err.contains("SHADER_F16"), "{name}: {err}");
            continue;
        }
        let result = tuner.tune_gemm(class).unwrap();
        assert_timed_every_variant(&engine, &result, &name);
        let f32_result = tuner.tune_gemm(f32_class).unwrap();

        let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
        let entries = file["entries"].as_array_mut().unwrap();
        let dtypes: Vec<bool> = entries.iter().map(|e| e["result"]["class"]["f16_inputs"].as_bool().unwrap()).collect();
        assert_eq!(dtypes, [true, false], "{name}");
        let other = if f32_result.chosen == GemmVariant::DEFAULT.name() { "tiled-8" } else { "tiled-16" };
        entries[1]["result"]["chosen"] = other.into();
        entries[1]["result"]["class"].as_object_mut().unwrap().remove("f16_inputs");
        std::fs::write(&cache, file.to_string()).unwrap();
        let reader = tuning_engine(&engine, &cache);
        assert_eq!(reader.gemm_variant(f32_class).unwrap().name(), other, "{name}");
        assert_eq!(reader.gemm_variant(class).unwrap().name(), result.chosen, "{name}");
        let _ = std::fs::remove_file(&cache);
    }
}
