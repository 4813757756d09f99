//! The kernel contract: every shader of `shaders/` as a Rust item typed by its uniform block.
//!
//! Each WGSL file has one entry point named like the file (`shaders/favor/features.wgsl` holds
//! `fn features`), its uniform block at binding 0 and its storage buffers at bindings 1.. in the
//! order the dispatch passes them. The uniform block is a `#[repr(C)]` struct here with the WGSL
//! struct's field names; `tests/shaders.rs` checks every field's offset and the size against naga's
//! reflection of the shader, so the two cannot drift apart.

use std::marker::PhantomData;

/// A shader's uniform block (binding 0).
pub trait Params: bytemuck::Pod {
    /// `(field, byte offset)` in declaration order.
    const FIELDS: &'static [(&'static str, usize)];
}

macro_rules! params {
    ($($(#[doc = $doc:literal])* $name:ident { $($field:ident: $ty:ty),* $(,)? })*) => {$(
        $(#[doc = $doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $(pub $field: $ty),* }
        impl Params for $name {
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field))),*];
        }
    )*};
}

/// One WGSL file: its source and the layout its uniform block must have.
#[derive(Debug, Clone, Copy)]
pub struct ShaderSource {
    /// Path under `shaders/` without the extension, e.g. `favor/features`.
    pub name: &'static str,
    pub source: &'static str,
    /// The uniform block's Rust struct: its name, `(field, byte offset)` and size in bytes.
    pub params: (&'static str, &'static [(&'static str, usize)], usize),
}

impl ShaderSource {
    /// The entry point: the last component of the name.
    pub fn entry_point(&self) -> &'static str {
        self.name.rsplit('/').next().unwrap_or(self.name)
    }
}

/// A shader whose dispatches take a `P` as their uniform block.
#[derive(Debug)]
pub struct Shader<P> {
    pub source: ShaderSource,
    params: PhantomData<fn() -> P>,
}

macro_rules! shaders {
    ($($item:ident: $path:literal, $params:ident;)*) => {
        $(pub(crate) const $item: Shader<$params> = Shader {
            source: ShaderSource {
                name: $path,
                source: include_str!(concat!("../../../shaders/", $path, ".wgsl")),
                params: (stringify!($params), <$params as Params>::FIELDS, std::mem::size_of::<$params>()),
            },
            params: PhantomData,
        };)*
        /// Every shader of the engine.
        pub const SHADERS: &[ShaderSource] = &[$($item.source),*];
    };
}

params! {
    /// A GEMM operand: element `(i, p)` of batch `z` at `base(z) + i * rs + p * cs` (see `gemm.rs`).
    GemmOperand { off: u32, outer: u32, inner: u32, inner_stride: u32, rs: u32, cs: u32, _pad0: u32, _pad1: u32 }
    Gemm {
        m: u32, n: u32, k: u32, z_base: u32,
        a: GemmOperand, b: GemmOperand, c: GemmOperand,
        b_ones_col: u32, alpha: f32, beta: f32, diag: f32, a_ones_col: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
    Fill { count: u32, off: u32, value: f32, _pad: u32 }
    Scan { rows: u32, problems: u32, row_stride: u32, _pad: u32 }
    CopyBlocks {
        outer: u32, inner: u32, len: u32, src_off: u32, src_outer: u32, src_inner: u32,
        dst_off: u32, dst_outer: u32, dst_inner: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
    RowStats { rows: u32, problems: u32, scratch_rows: u32, dim: u32, features: u32, kind: u32, x_off: u32, x_stride: u32 }
    Features { rows: u32, problems: u32, scratch_rows: u32, features: u32, kernel: u32, is_key: u32, eps: f32, _pad: u32 }
    Mask { rows: u32, problems: u32, scratch_rows: u32, chunk: u32, chunks: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
    RowScale { rows: u32, problems: u32, scratch_rows: u32, width: u32, chunk: u32, is_key: u32, _pad0: u32, _pad1: u32 }
    StateScan {
        rows: u32, problems: u32, scratch_rows: u32, width: u32, chunk: u32, chunks: u32,
        reverse: u32, every: u32, first_chunk: u32, count: u32, _pad0: u32, _pad1: u32,
    }
    Walk {
        rows: u32, problems: u32, scratch_rows: u32, features: u32, value_dim: u32, chunk: u32,
        first: u32, count: u32, len: u32, start: u32, _pad0: u32, _pad1: u32,
    }
    Normalize { rows: u32, problems: u32, scratch_rows: u32, value_dim: u32, out_off: u32, out_stride: u32, _pad0: u32, _pad1: u32 }
    Exact { len: u32, dim: u32, value_dim: u32, causal: u32, z_base: u32, scale: f32, key_first: u32, key_last: u32 }
    GradPrep { rows: u32, problems: u32, scratch_rows: u32, value_dim: u32, start: u32, len: u32, _pad0: u32, _pad1: u32 }
    FeaturesBackward {
        rows: u32, problems: u32, scratch_rows: u32, dim: u32, features: u32, kernel: u32,
        is_key: u32, scale: f32, x_off: u32, x_stride: u32, _pad0: u32, _pad1: u32,
    }
    SMatrix { batch: u32, l: u32, padded: u32, _pad: u32 }
    Blocks { batch: u32, n: u32, _pad0: u32, _pad1: u32 }
    Place { blocks: u32, side: u32, n: u32, pairs: u32 }
    Mirror { count: u32, l: u32, _pad0: u32, _pad1: u32 }
    Reflection { batch: u32, n: u32, l: u32, column: u32 }
    Expm { batch: u32, mode: u32, first: u32, pass_index: u32, method: u32, a_first: u32, alpha: f32, _pad: u32 }
    Combine { count: u32, _pad0: u32, _pad1: u32, _pad2: u32, c: [f32; 4] }
    Activate { count: u32, activation: u32, _pad0: u32, _pad1: u32 }
}

shaders! {
    GEMM: "common/gemm", Gemm;
    FILL: "common/fill", Fill;
    SCAN_MAX: "common/scan_max", Scan;
    COPY: "common/copy", CopyBlocks;
    ROW_STATS: "favor/row_stats", RowStats;
    FEATURES: "favor/features", Features;
    CAUSAL_MASK: "favor/causal_mask", Mask;
    ROW_SCALE: "favor/row_scale", RowScale;
    STATE_SCAN: "favor/state_scan", StateScan;
    STATE_WALK: "favor/state_walk", Walk;
    NORMALIZE: "favor/normalize", Normalize;
    EXACT: "favor/exact", Exact;
    GRAD_PREP: "favor/grad_prep", GradPrep;
    FEATURES_BACKWARD: "favor/features_backward", FeaturesBackward;
    S_MATRIX: "cwy/s_matrix", SMatrix;
    TRI_INVERSE_BLOCKS: "cwy/tri_inverse_blocks", Blocks;
    PLACE_BLOCKS: "cwy/place_blocks", Place;
    MIRROR_UPPER: "cwy/mirror_upper", Mirror;
    HOUSEHOLDER: "cwy/householder", Reflection;
    EXPM: "flow/expm", Expm;
    COMBINE: "flow/combine", Combine;
    ACTIVATE: "flow/activate", Activate;
}
