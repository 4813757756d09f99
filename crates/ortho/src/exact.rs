//! Exact softmax attention (docs/math.md §1.7), the accuracy and speed baseline of random-feature
//! attention: FlashAttention-style, key blocks streamed with running maxima and sums, no `L x L`
//! buffer. The CPU twin is `ortho_ref::favor::exact`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::favor::attention_shape;
use crate::kernels;
use crate::operation::{Operation, run_batches};
use crate::pool::Recorded;
use crate::tensor::GpuTensor;
use ortho_ref::Tensor;

/// The largest head dimension exact attention keeps in registers.
pub const EXACT_MAX_DIM: usize = 128;
pub(crate) const EXACT_ROWS: usize = 64;
/// Key blocks one dispatch of exact attention walks before handing its running sums to the next.
const EXACT_BLOCKS_PER_DISPATCH: usize = 16;
/// vec4 slots of the key and value tile in workgroup memory (16 KiB).
pub(crate) const EXACT_TILE_VEC4: usize = 1024;

/// Exact softmax attention, bidirectional or causal: inputs q, k, v as for random-feature attention.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactAttention {
    pub causal: bool,
}

impl Operation for ExactAttention {
    const NAME: &'static str = "exact attention";
    const INPUTS: &'static [&'static str] = &["q", "k", "v"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[4]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![attention_shape(i[0], i[1], i[2], None, None)?.output_shape(i[0].len())])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_exact_attention(enc, i[0], i[1], i[2], self.causal, o[0])
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        Some(crate::cpu::exact_attention([i[0], i[1], i[2]], self.causal).map(|o| vec![o]).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Ok(vec![ortho_ref::favor::exact(&i[0], &i[1], &i[2], self.causal)?])
    }
}

impl Engine {
    /// Exact softmax attention of host tensors (the baseline), bidirectional or causal.
    pub fn exact_attention(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        causal: bool,
    ) -> Result<Tensor<f32>> {
        Ok(self.run(&ExactAttention { causal }, &[q, k, v])?.remove(0))
    }

    pub async fn exact_attention_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        causal: bool,
    ) -> Result<Tensor<f32>> {
        Ok(self.run_async(&ExactAttention { causal }, &[q, k, v]).await?.remove(0))
    }

    pub fn exact_attention_gpu(&self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, causal: bool) -> Result<GpuTensor> {
        Ok(self.run_gpu(&ExactAttention { causal }, &[q, k, v])?.remove(0))
    }

    pub fn record_exact_attention(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        causal: bool,
        out: &GpuTensor,
    ) -> Result<Recorded> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), None, Some(out.shape()))?;
        if s.dim > EXACT_MAX_DIM || s.value_dim > EXACT_MAX_DIM {
            return Err(Error::Unsupported(format!(
                "exact attention keeps a query row in registers: d = {} and dv = {} must be at most {EXACT_MAX_DIM}",
                s.dim, s.value_dim
            )));
        }
        let gpu = self.recording("exact attention", &[q, k, v, out])?;
        let (d4, dv4) = (s.dim.div_ceil(4), s.value_dim.div_ceil(4));
        let block = (EXACT_TILE_VEC4 / (d4 + dv4)).min(64);
        let constants = [("D4", d4 as f64), ("DV4", dv4 as f64), ("BLOCK", block as f64)];
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("exact attention"),
            timestamp_writes: None,
        });
        let (row_groups, z, max) = (s.len.div_ceil(EXACT_ROWS), s.problems(), gpu.max_groups());
        let carry = gpu.allocate("exact attention", &(4 * z * s.len * (dv4 + 1)))?;
        let keys_per_dispatch = block * EXACT_BLOCKS_PER_DISPATCH;
        for z_base in (0..z).step_by(max) {
            for row_base in (0..row_groups).step_by(max) {
                for key_first in (0..s.len).step_by(keys_per_dispatch) {
                    let params = kernels::Exact {
                        len: s.len as u32,
                        dim: s.dim as u32,
                        value_dim: s.value_dim as u32,
                        causal: causal as u32,
                        z_base: z_base as u32,
                        scale: 1.0 / (s.dim as f32).sqrt(),
                        key_first: key_first as u32,
                        key_last: (key_first + keys_per_dispatch).min(s.len) as u32,
                        row_base: row_base as u32,
                        ..Default::default()
                    };
                    let groups = [(row_groups - row_base).min(max) as u32, (z - z_base).min(max) as u32, 1];
                    let bufs = [q.buffer(), k.buffer(), v.buffer(), out.buffer(), carry.buffer()];
                    gpu.dispatch_with(&mut pass, &kernels::EXACT, &constants, &params, &bufs, groups)?;
                }
            }
        }
        drop(pass);
        Ok(gpu.finish())
    }
}
