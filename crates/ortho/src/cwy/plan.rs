//! The sizes of one compact-WY call and the scratch each entry point takes.

use super::*;
use crate::scratch::scratch_plan;

/// U is `[b, n, l]`; the inverse `S^(-1)` is computed padded to `padded x padded` (a power of two, at
/// least one diagonal block).
#[derive(Debug, Clone, Copy)]
pub(super) struct CwyPlan {
    pub b: usize,
    pub n: usize,
    pub l: usize,
    pub padded: usize,
}

impl CwyPlan {
    /// The plan of a device-resident U, from its shape alone (values are not read back).
    pub fn new(u: &[usize]) -> Result<Self> {
        let (b, n, l) = match *u {
            [n, l] => (1, n, l),
            [b, n, l] => (b, n, l),
            _ => return Err(InputError::shape("u", "[N, L] or [batch, N, L]", u).into()),
        };
        if b == 0 || l == 0 || l > n {
            return Err(InputError::shape("u", "[batch, N, L] with batch >= 1 and 1 <= L <= N", u).into());
        }
        Ok(CwyPlan { b, n, l, padded: l.next_power_of_two().max(BLOCK) })
    }

    pub fn units(&self) -> UnitSizes {
        UnitSizes { unit: self.b * self.n * self.l, norms: self.b * self.l }
    }

    /// Every level of the blocked inversion joins pairs of blocks of side `s`, `padded / 2s` pairs of
    /// `s x s` products: `padded^2 / 4` floats at the last level, the most of any.
    pub fn inverse(&self) -> InverseSizes {
        let (b, l, p) = (self.b, self.l, self.padded);
        InverseSizes {
            units: self.units(),
            gram: b * l * l,
            s: b * p * p,
            x: b * p * p,
            level_t: b * p * p / 4,
            level_joined: b * p * p / 4,
        }
    }

    pub fn du(&self) -> DuSizes {
        let ll = self.b * self.l * self.l;
        DuSizes { t: ll, bm: ll, pp: ll, du_unit: self.b * self.n * self.l }
    }
}

scratch_plan! {
    /// Floats of U's unit columns and their lengths.
    pub(super) struct UnitSizes => UnitScratch {
        unit: usize,
        norms: usize,
    }
}

scratch_plan! {
    /// Floats of the blocked inversion's scratch: the unit columns, `U^T U`, S, its inverse X, and the
    /// two products of a level (reused by every level).
    pub(super) struct InverseSizes => InverseScratch {
        units: UnitSizes,
        gram: usize,
        s: usize,
        x: usize,
        level_t: usize,
        level_joined: usize,
    }
}

scratch_plan! {
    /// Floats of the gradient's last stage: `W^T UtGU`, `B` and `P + P^T`, each `[b, l, l]`, and the
    /// gradient with respect to the unit columns.
    pub(super) struct DuSizes => DuScratch {
        t: usize,
        bm: usize,
        pp: usize,
        du_unit: usize,
    }
}

scratch_plan! {
    /// Floats of [`Engine::record_cwy`]'s scratch: the inverse and `T = W U^T`.
    pub(super) struct CwySizes => CwyScratch {
        inverse: InverseSizes,
        t: usize,
    }
}

scratch_plan! {
    /// Floats of [`Engine::record_cwy_apply`]'s scratch: the inverse, `U^T X` and `W U^T X`.
    pub(super) struct ApplySizes => ApplyScratch {
        inverse: InverseSizes,
        utx: usize,
        wutx: usize,
    }
}

scratch_plan! {
    /// Floats of [`Engine::record_cwy_backward`]'s scratch: the inverse, `G U`, `G^T U`, `U^T G U`
    /// and the last stage's.
    pub(super) struct BackwardSizes => BackwardScratch {
        inverse: InverseSizes,
        gu: usize,
        gtu: usize,
        utgu: usize,
        du: DuSizes,
    }
}

scratch_plan! {
    /// Floats of [`Engine::record_cwy_apply_backward`]'s scratch: the inverse, `R^T U`, `L^T U`,
    /// `U^T L` for the two sides `L`, `R` of `G = L R^T`, then as [`BackwardSizes`].
    pub(super) struct ApplyBackwardSizes => ApplyBackwardScratch {
        inverse: InverseSizes,
        rtu: usize,
        ltu: usize,
        ltu_t: usize,
        gu: usize,
        gtu: usize,
        utgu: usize,
        du: DuSizes,
    }
}
