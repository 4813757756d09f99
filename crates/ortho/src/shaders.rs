//! The pipeline cache and the one way to record a dispatch of a kernel (see `kernels.rs` for the
//! shaders themselves).

use crate::engine::Gpu;
use crate::error::{Error, Result};
use crate::kernels::{Params, Shader, ShaderSource};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Pipeline-overridable constants of a shader (`override` declarations), by name.
pub(crate) type Constants<'a> = &'a [(&'static str, f64)];

type PipelineKey = (&'static str, Vec<(&'static str, u64)>);

/// A compiled pipeline and its bind group layout.
pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The layout every kernel shares: its uniform block at binding 0, its storage buffers at 1...
fn bind_group_layout(device: &wgpu::Device, shader: &ShaderSource) -> wgpu::BindGroupLayout {
    let entry = |binding: u32, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
    entries.extend(
        shader
            .read_only()
            .enumerate()
            .map(|(i, read_only)| entry(i as u32 + 1, wgpu::BufferBindingType::Storage { read_only })),
    );
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(shader.name), entries: &entries })
}

/// Compiled pipelines, one per shader and set of override constants, made on first use.
#[derive(Default)]
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl PipelineCache {
    pub fn get(&self, device: &wgpu::Device, shader: &ShaderSource, constants: Constants) -> Result<Arc<Pipeline>> {
        let key = (shader.name, constants.iter().map(|&(n, v)| (n, v.to_bits())).collect());
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        // Errors surface in the error scopes of the submission that records the pipeline's use.
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source().into()),
        });
        let layout = bind_group_layout(device, shader);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(shader.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(shader.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        });
        let entry = Arc::new(Pipeline { pipeline, layout });
        cache.insert(key, entry.clone());
        Ok(entry)
    }

    /// Forgets every pipeline (after a GPU error, which an invalid pipeline may have caused).
    pub fn clear(&self) {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Workgroup counts for `invocations` threads in groups of `group`, spread over x and y so that no
/// dimension passes the 65,535 limit; shaders rebuild the linear index from `num_workgroups`.
pub(crate) fn grid(invocations: u64, group: u32) -> Result<[u32; 3]> {
    const MAX: u64 = 65_535;
    let groups = invocations.div_ceil(group as u64).max(1);
    let x = groups.min(MAX);
    let y = groups.div_ceil(x);
    if y > MAX {
        return Err(Error::Limit {
            what: format!("a grid of {invocations} invocations"),
            needed: invocations,
            limit_name: "workgroups per dispatch (65,535^2 groups)",
            limit: MAX * MAX * group as u64,
        });
    }
    Ok([x as u32, y as u32, 1])
}

impl Gpu {
    /// Records one dispatch of `shader` with uniform block `params` at binding 0 and `buffers` at
    /// bindings 1...
    pub(crate) fn dispatch<P: Params>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        shader: &Shader<P>,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with(pass, shader, &[], params, buffers, groups)
    }

    /// [`Gpu::dispatch`] of a pipeline specialised by override `constants`.
    pub(crate) fn dispatch_with<P: Params>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        shader: &Shader<P>,
        constants: Constants,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let name = shader.source.name;
        let pipeline = self.pipelines.get(&self.device, &shader.source, constants)?;
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &pipeline.layout,
            entries: &entries,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }
}
