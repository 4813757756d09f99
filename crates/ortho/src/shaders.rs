//! The shader registry (every WGSL file of `shaders/`, embedded) and the pipeline cache.
//!
//! Each file has one entry point, named like the file: `shaders/favor/features.wgsl` holds
//! `fn features`. Binding 0 is the kernel's uniform block; bindings 1.. are storage buffers in the
//! order the dispatch module passes them.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

#[derive(Debug, Clone, Copy)]
pub struct ShaderSource {
    /// Path under `shaders/` without the extension, e.g. `favor/features`.
    pub name: &'static str,
    pub source: &'static str,
}

impl ShaderSource {
    /// The entry point: the last component of the name.
    pub fn entry_point(&self) -> &'static str {
        self.name.rsplit('/').next().unwrap_or(self.name)
    }
}

macro_rules! shaders {
    ($($name:literal),* $(,)?) => {
        &[$(ShaderSource {
            name: $name,
            source: include_str!(concat!("../../../shaders/", $name, ".wgsl")),
        }),*]
    };
}

/// Every shader of the engine.
pub const SHADERS: &[ShaderSource] = shaders![
    "common/gemm",
    "common/fill",
    "common/scan_max",
    "common/copy",
    "favor/row_stats",
    "favor/features",
    "favor/causal_mask",
    "favor/row_scale",
    "favor/state_scan",
    "favor/state_walk",
    "favor/normalize",
    "favor/exact",
    "favor/grad_prep",
    "favor/features_backward",
    "cwy/s_matrix",
    "cwy/tri_inverse_blocks",
    "cwy/place_blocks",
    "cwy/mirror_upper",
    "cwy/householder",
    "flow/expm",
    "flow/combine",
    "flow/activate",
];

pub(crate) fn source(name: &str) -> Result<&'static ShaderSource> {
    SHADERS.iter().find(|s| s.name == name).ok_or_else(|| Error::Unsupported(format!("no shader named {name}")))
}

/// Pipeline-overridable constants of a shader (`override` declarations), by name.
pub(crate) type Constants<'a> = &'a [(&'static str, f64)];

type PipelineKey = (&'static str, Vec<(&'static str, u64)>);

/// Compiled pipelines, one per shader and set of override constants, made on first use.
#[derive(Default)]
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub fn get(&self, device: &wgpu::Device, name: &str, constants: Constants) -> Result<Arc<wgpu::ComputePipeline>> {
        let shader = source(name)?;
        let key = (shader.name, constants.iter().map(|&(n, v)| (n, v.to_bits())).collect());
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        // Errors surface in the error scopes of the submission that records the pipeline's use.
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader.name),
            layout: None,
            module: &module,
            entry_point: Some(shader.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        });
        let pipeline = Arc::new(pipeline);
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
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

/// Records one dispatch of shader `name` with uniform block `params` at binding 0 and `buffers` at
/// bindings 1...
pub(crate) fn dispatch(
    device: &wgpu::Device,
    cache: &PipelineCache,
    pass: &mut wgpu::ComputePass<'_>,
    name: &str,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<()> {
    dispatch_with(device, cache, pass, name, &[], params, buffers, groups)
}

/// [`dispatch`] of a pipeline specialised by override `constants`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch_with(
    device: &wgpu::Device,
    cache: &PipelineCache,
    pass: &mut wgpu::ComputePass<'_>,
    name: &str,
    constants: Constants,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<()> {
    let pipeline = cache.get(device, name, constants)?;
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(name),
        contents: params,
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    entries.extend(
        buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
    );
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    pass.set_pipeline(&pipeline);
    pass.set_bind_group(0, &bind_group, &[]);
    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    Ok(())
}
