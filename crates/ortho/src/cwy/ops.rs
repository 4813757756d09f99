//! The compact-WY operations (docs/math.md §2) and their host and device entry points.

use super::*;
use crate::operation::{Operation, run_batches};
use ortho_ref::Tensor;
use ortho_ref::cwy as reference;

/// Every Householder vector is nonzero (and finite): a check on host values only.
fn nonzero_columns(u: &Tensor<f32>) -> Result<()> {
    reference::shape_of(&u.to_f64())?;
    Ok(())
}

/// `Q = H(u_1) ... H(u_L)` by compact WY from `u: [N, L]` or `[batch, N, L]`: `[.., N, N]`; with
/// `stiefel`, its first L columns `Omega` (T-CWY): `[.., N, L]`, no `N x N` matrix.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cwy {
    pub stiefel: bool,
}

impl Operation for Cwy {
    const NAME: &'static str = "cwy";
    const INPUTS: &'static [&'static str] = &["u"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let CwyPlan { n, l, .. } = CwyPlan::new(i[0])?;
        Ok(vec![batched(i[0], &[n, if self.stiefel { l } else { n }])])
    }

    fn check_values(&self, i: &[&Tensor<f32>]) -> Result<()> {
        nonzero_columns(i[0])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_cwy(enc, i[0], o[0], self.stiefel)
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        Some(crate::cpu::cwy(i[0], self.stiefel).map(|q| vec![q]).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Ok(vec![if self.stiefel { reference::tcwy(&i[0])? } else { reference::cwy(&i[0])? }])
    }
}

/// `Q X` (or `Q^T X` with `transpose`) without forming Q; `x: [.., N, K]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CwyApply {
    pub transpose: bool,
}

impl Operation for CwyApply {
    const NAME: &'static str = "cwy apply";
    const INPUTS: &'static [&'static str] = &["u", "x"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let CwyPlan { b, n, .. } = CwyPlan::new(i[0])?;
        apply_width(i[1], b, n)?;
        Ok(vec![i[1].to_vec()])
    }

    fn check_values(&self, i: &[&Tensor<f32>]) -> Result<()> {
        nonzero_columns(i[0])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_cwy_apply(enc, i[0], i[1], o[0], self.transpose)
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        Some(crate::cpu::cwy_apply(i[0], i[1], self.transpose).map(|y| vec![y]).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Ok(vec![reference::apply(&i[0], &i[1], self.transpose)?])
    }
}

/// `dloss/dU` for `Q = cwy(U)` (or `Omega`, with `stiefel`) given `grad = dloss/dQ`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CwyBackward {
    pub stiefel: bool,
}

impl Operation for CwyBackward {
    const NAME: &'static str = "cwy backward";
    const INPUTS: &'static [&'static str] = &["u", "grad"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let want = Cwy { stiefel: self.stiefel }.output_shapes(&i[..1])?.remove(0);
        if i[1] != want.as_slice() {
            return Err(InputError::shape("grad", format!("{want:?}"), i[1]).into());
        }
        Ok(vec![i[0].to_vec()])
    }

    fn check_values(&self, i: &[&Tensor<f32>]) -> Result<()> {
        nonzero_columns(i[0])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_cwy_backward(enc, i[0], i[1], o[0], self.stiefel)
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        Some(crate::cpu::cwy_backward(i[0], i[1], self.stiefel).map(|du| vec![du]).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let du =
            if self.stiefel { reference::tcwy_backward(&i[0], &i[1])? } else { reference::cwy_backward(&i[0], &i[1])? };
        Ok(vec![du])
    }
}

/// `(dloss/dU, dloss/dX)` for `Y = Q X` (or `Q^T X`) given `grad = dloss/dY`, never forming an
/// `N x N` matrix.
#[derive(Debug, Clone, Copy, Default)]
pub struct CwyApplyBackward {
    pub transpose: bool,
}

impl Operation for CwyApplyBackward {
    const NAME: &'static str = "cwy apply backward";
    const INPUTS: &'static [&'static str] = &["u", "x", "grad"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        CwyApply { transpose: self.transpose }.output_shapes(&i[..2])?;
        if i[2] != i[1] {
            return Err(InputError::shape("grad", format!("{:?} (the shape of x)", i[1]), i[2]).into());
        }
        Ok(vec![i[0].to_vec(), i[1].to_vec()])
    }

    fn check_values(&self, i: &[&Tensor<f32>]) -> Result<()> {
        nonzero_columns(i[0])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_cwy_apply_backward(enc, i[0], i[1], i[2], self.transpose, o[0], o[1])
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        let grads = crate::cpu::cwy_apply_backward(i[0], i[1], i[2], self.transpose);
        Some(grads.map(Vec::from).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let (du, dx) = reference::apply_backward(&i[0], &i[1], &i[2], self.transpose)?;
        Ok(vec![du, dx])
    }
}

/// The sequential product of L reflections (the baseline CWY beats): `[.., N, N]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HouseholderProduct;

impl Operation for HouseholderProduct {
    const NAME: &'static str = "householder product";
    const INPUTS: &'static [&'static str] = &["u"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Cwy { stiefel: false }.output_shapes(i)
    }

    fn check_values(&self, i: &[&Tensor<f32>]) -> Result<()> {
        nonzero_columns(i[0])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_householder_product(enc, i[0], o[0])
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Ok(vec![reference::householder_product(&i[0])?])
    }
}

impl Engine {
    /// `Q = H(u_1) ... H(u_L)` from `u: [N, L]` or `[batch, N, L]` by compact WY: `[.., N, N]`.
    pub fn cwy(&self, u: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&Cwy { stiefel: false }, &[u])?.remove(0))
    }

    /// The Stiefel matrix `Omega`, the first L columns of Q (T-CWY): `[.., N, L]`.
    pub fn tcwy(&self, u: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&Cwy { stiefel: true }, &[u])?.remove(0))
    }

    /// `Q X` (or `Q^T X` with `transpose`) without forming Q; `x: [.., N, K]`.
    pub fn cwy_apply(&self, u: &Tensor<f32>, x: &Tensor<f32>, transpose: bool) -> Result<Tensor<f32>> {
        Ok(self.run(&CwyApply { transpose }, &[u, x])?.remove(0))
    }

    /// The sequential product of L reflections on the GPU (the baseline): `[.., N, N]`.
    pub fn householder_product(&self, u: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&HouseholderProduct, &[u])?.remove(0))
    }

    /// [`Engine::cwy`] on a device-resident U (its columns are not checked for zeros).
    pub fn cwy_gpu(&self, u: &GpuTensor) -> Result<GpuTensor> {
        Ok(self.run_gpu(&Cwy { stiefel: false }, &[u])?.remove(0))
    }

    /// [`Engine::tcwy`] on a device-resident U.
    pub fn tcwy_gpu(&self, u: &GpuTensor) -> Result<GpuTensor> {
        Ok(self.run_gpu(&Cwy { stiefel: true }, &[u])?.remove(0))
    }

    /// [`Engine::cwy_apply`] on device-resident tensors.
    pub fn cwy_apply_gpu(&self, u: &GpuTensor, x: &GpuTensor, transpose: bool) -> Result<GpuTensor> {
        Ok(self.run_gpu(&CwyApply { transpose }, &[u, x])?.remove(0))
    }

    /// `dloss/dU` for `Q = cwy(U)` given `g = dloss/dQ` (`[.., N, N]`).
    pub fn cwy_backward(&self, u: &Tensor<f32>, g: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&CwyBackward { stiefel: false }, &[u, g])?.remove(0))
    }

    /// `dloss/dU` for `Omega = tcwy(U)` given `g = dloss/dOmega` (`[.., N, L]`).
    pub fn tcwy_backward(&self, u: &Tensor<f32>, g: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&CwyBackward { stiefel: true }, &[u, g])?.remove(0))
    }

    /// `(dloss/dU, dloss/dX)` for `Y = Q X` (or `Q^T X`) given `ybar = dloss/dY`.
    pub fn cwy_apply_backward(
        &self,
        u: &Tensor<f32>,
        x: &Tensor<f32>,
        ybar: &Tensor<f32>,
        transpose: bool,
    ) -> Result<(Tensor<f32>, Tensor<f32>)> {
        let mut grads = self.run(&CwyApplyBackward { transpose }, &[u, x, ybar])?;
        let dx = grads.remove(1);
        Ok((grads.remove(0), dx))
    }
}
