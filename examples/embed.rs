//! An application that owns its wgpu device and buffers runs FAVOR+ on them through
//! `Engine::from_device`, recording into its own command encoder: no second device and no host round
//! trip between its own work and ortho's.
//!
//!     cargo run --example embed

use ortho::random::{Scaling, projection};
use ortho::wgpu::{self, util::DeviceExt};
use ortho::{Engine, FavorOptions, GpuTensor, Kernel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's own device, made the way any wgpu program makes one.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let Ok(adapter) = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())) else {
        eprintln!("no GPU adapter: this example needs one (install mesa-vulkan-drivers for a software one)");
        return Ok(());
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("application device: {:?} / {}", adapter.get_info().backend, adapter.get_info().name);

    // The application's buffers: tokens it produced on the GPU (here simply uploaded once).
    let (heads, len, dim, features) = (4, 256, 32, 128);
    let tokens: Vec<f32> = (0..heads * len * dim).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.8).collect();
    let storage = |data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("application buffer"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    };
    let x = GpuTensor::from_buffer(storage(&tokens), &[1, heads, len, dim])?;
    let w = projection(features, dim, Scaling::Chi, 7)?.to_f32();
    let w = GpuTensor::from_buffer(storage(w.data()), &[features, dim])?;
    let out = GpuTensor::from_buffer(storage(&vec![0.0; heads * len * dim]), &[1, heads, len, dim])?;

    // ortho shares the device and records into the application's encoder, beside its own commands.
    let engine = Engine::from_device(device.clone(), queue.clone());
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frame") });
    // The guard holds ortho's scratch until the encoder has been submitted: the pool hands a buffer
    // out again only once the GPU work using it has completed.
    let recorded = engine.record_favor(&mut encoder, &x, &x, &x, &w, &FavorOptions::new(Kernel::Softmax), &out)?;
    // ... the application's next pass could read `out.buffer()` here ...
    queue.submit([encoder.finish()]);
    recorded.submitted();

    // Only to show the result: read it back and check it against the CPU reference.
    let got = engine.download(&out)?;
    let host_x = ortho::Tensor::new(&[1, heads, len, dim], tokens)?;
    let host_w = engine.download(&w)?;
    let want =
        Engine::cpu("reference").favor(&host_x, &host_x, &host_x, &host_w, &FavorOptions::new(Kernel::Softmax))?;
    let err = ortho_ref::tensor::relative_frobenius(got.data(), want.data());
    println!(
        "FAVOR+ on the application's buffers: [1, {heads}, {len}, {dim}], m = {features}; relative error vs the f64 reference {err:.2e}"
    );
    Ok(())
}
