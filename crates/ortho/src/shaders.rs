//! The pipeline cache (see `kernels.rs` for the shaders themselves and `recording.rs` for the one
//! way to record a dispatch).

use crate::error::Result;
use crate::kernels::ShaderSource;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Pipeline-overridable constants of a shader (`override` declarations), by name.
pub(crate) type Constants<'a> = &'a [(&'static str, f64)];

type PipelineKey = (&'static str, &'static [&'static str], Vec<(&'static str, u64)>);

/// A compiled pipeline and its bind group layout.
pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Pipeline {
    pub fn pipeline(&self) -> &wgpu::ComputePipeline {
        &self.pipeline
    }

    pub fn layout(&self) -> &wgpu::BindGroupLayout {
        &self.layout
    }
}

/// The layout every kernel shares: its uniform block at binding 0 (at a dynamic offset into the
/// recording's uniform buffer), its storage buffers at 1...
fn bind_group_layout(device: &wgpu::Device, shader: &ShaderSource) -> wgpu::BindGroupLayout {
    let entry = |binding: u32, ty, has_dynamic_offset| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset, min_binding_size: None },
        count: None,
    };
    let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform, true)];
    entries.extend(
        shader
            .read_only()
            .enumerate()
            .map(|(i, read_only)| entry(i as u32 + 1, wgpu::BufferBindingType::Storage { read_only }, false)),
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
        let key = (shader.name, shader.bindings, constants.iter().map(|&(n, v)| (n, v.to_bits())).collect());
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
