//! Work past a device's limits, on devices opened with shrunk limits (as an application embedding
//! ortho may do): a clear error naming the call and the limit, never a wgpu panic or a wrong answer.
mod common;
use common::*;
use ortho::{Engine, Error, wgpu};

/// Every engine of [`gpu_engines`], reopened on its adapter with a `binding`-byte storage binding limit.
fn shrunk_engines(binding: u64) -> Vec<Engine> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    gpu_engines()
        .iter()
        .filter_map(|e| {
            let name = e.describe();
            let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
            let adapter =
                adapters.into_iter().find(|a| format!("{:?} / {}", a.get_info().backend, a.get_info().name) == name)?;
            let limits = wgpu::Limits { max_storage_buffer_binding_size: binding, ..adapter.limits() };
            let descriptor = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
            let (device, queue) = pollster::block_on(adapter.request_device(&descriptor)).ok()?;
            Some(Engine::from_device(device, queue))
        })
        .collect()
}

#[test]
fn scratch_past_the_binding_limit_is_a_clear_error() {
    let engines = shrunk_engines(512 << 10);
    assert_eq!(engines.len(), gpu_engines().len());
    for e in engines {
        // U is 264 KB, but the inverse of S is padded to 512 x 512 (1 MiB).
        let u = e.upload("u", &gaussian(&[257, 257], 1.0, 1)).unwrap();
        let err = e.run_gpu(&ortho::ops::Cwy { stiefel: true }, &[&u]).unwrap_err();
        assert!(matches!(err, Error::Limit { .. }), "{err}");
        assert!(err.to_string().contains("a scratch buffer of cwy"), "{err}");
        // Within the limit the same engine still answers.
        let u = e.upload("u", &gaussian(&[100, 40], 1.0, 2)).unwrap();
        let q = e.download(&e.run_gpu(&ortho::ops::Cwy { stiefel: true }, &[&u]).unwrap()[0]).unwrap();
        let want = ortho_ref::cwy::tcwy(&e.download(&u).unwrap().to_f64()).unwrap();
        assert!(relative_frobenius(q.data(), want.data()) < 1e-5);
    }
}
