//! The kernel contract: every shader of `shaders/` as a Rust item typed by its uniform block.
//!
//! Each WGSL file holds one entry point named like the file (`shaders/favor/features.wgsl` holds
//! `fn features`) and nothing that Rust also needs: the engine writes the rest in front of it, from
//! the items here. That is the uniform block `p` at binding 0 (a `#[repr(C)]` struct below, declared
//! to WGSL field by field), the storage buffers at bindings 1.. in the order the dispatch passes them,
//! the constants both sides use ([`shared_constants`]), and `group_index` and `element_index`, the
//! linear indices of a workgroup and an invocation in a grid spread over x, y and z. `tests/shaders.rs` checks every field's offset against
//! naga's reflection of the assembled shader.

use std::marker::PhantomData;

/// A Rust type with a WGSL twin of the same layout.
pub trait WgslType {
    const WGSL: &'static str;
    /// Appends the declarations the type needs (its own struct, and those of its fields).
    fn declare(_out: &mut String) {}
}

impl WgslType for u32 {
    const WGSL: &'static str = "u32";
}

impl WgslType for f32 {
    const WGSL: &'static str = "f32";
}

impl WgslType for [f32; 4] {
    const WGSL: &'static str = "vec4<f32>";
}

/// A shader's uniform block (binding 0).
pub trait Params: bytemuck::Pod + WgslType {
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
        impl WgslType for $name {
            const WGSL: &'static str = stringify!($name);
            fn declare(out: &mut String) {
                $(<$ty as WgslType>::declare(out);)*
                let head = concat!("struct ", stringify!($name), " {");
                if !out.contains(head) {
                    let fields: &[String] = &[$(format!("{}: {}", stringify!($field), <$ty as WgslType>::WGSL)),*];
                    out.push_str(&format!("{head} {} }}\n", fields.join(", ")));
                }
            }
        }
    )*};
}

/// Invocations of the kernels that take a workgroup per row (or column) and stride over it.
pub(crate) const REDUCE_GROUP: usize = 64;

/// The constants shaders share with the engine, as WGSL: each is written once, in Rust.
pub fn shared_constants() -> String {
    use crate::favor::{KEY_MAX, LOWEST, QUERY_MAX, WALK_MAX_FEATURES, WALK_TILE};
    use crate::flow::{CAYLEY_COLUMNS_PER_PASS, ExpmOutput, GroupMap, SLOTS};
    let u = |name: &str, value: usize| format!("const {name}: u32 = {value}u;\n");
    let theta = ortho_ref::expm::THETA_F32.map(|t| format!("{:?}", t as f32)).join(", ");
    [
        format!("const LOWEST: f32 = {LOWEST:?};\n"),
        u("KERNEL_SOFTMAX", 0),
        u("KERNEL_TRIG", 1),
        u("QUERY_MAX", QUERY_MAX as usize),
        u("KEY_MAX", KEY_MAX as usize),
        u("HALF_SQ", crate::favor::HALF_SQ as usize),
        u("WALK_MAX_FEATURES", WALK_MAX_FEATURES),
        u("WALK_TILE", WALK_TILE),
        u("REDUCE_GROUP", REDUCE_GROUP),
        u("EXPRESS_MAX_D4", crate::express::STREAM_MAX_DIM / 4),
        u("GEMM_TILE", crate::gemm::TILE),
        u("A_UPPER", crate::gemm::Triangle::Upper as usize),
        u("A_LOWER", crate::gemm::Triangle::Lower as usize),
        u("TRI_BLOCK", crate::cwy::BLOCK),
        u("UNIT_FORWARD", crate::cwy::UNIT_FORWARD as usize),
        u("UNIT_BACKWARD", crate::cwy::UNIT_BACKWARD as usize),
        u("EXACT_ROWS", crate::exact::EXACT_ROWS),
        u("EXACT_TILE_VEC4", crate::exact::EXACT_TILE_VEC4),
        u("EXP", ExpmOutput::Exp as usize),
        u("INCREMENT", ExpmOutput::Increment as usize),
        u("UPDATE", ExpmOutput::Update as usize),
        u("CAYLEY", GroupMap::Cayley as usize),
        u("CAYLEY_COLUMNS_PER_PASS", CAYLEY_COLUMNS_PER_PASS),
        u("SLOTS", SLOTS),
        format!("const THETA: array<f32, 6> = array<f32, 6>({theta});\n"),
        u("ACT_TANH", 0),
        u("ACT_RELU", 1),
        u("NO_EDGE", crate::ising::NO_EDGE as usize),
        u("FRONT_WORDS", crate::ising::frontal::FRONT_WORDS),
        u("CHILD_WORDS", crate::ising::frontal::CHILD_WORDS),
        u("ENTRY_WORDS", crate::ising::frontal::ENTRY_WORDS),
        u("ROOT_FRONT", crate::ising::frontal::ROOT_FRONT as usize),
        format!("const LN_2: f32 = {:?};\n", std::f32::consts::LN_2),
    ]
    .concat()
}

/// The linear index of an invocation of a grid spread over x and y (see `shaders::grid`).
const ELEMENT_INDEX: &str = "fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wg.z * nwg.y + wg.y) * nwg.x + wg.x;
}
fn element_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return group_index(wg, nwg) * size + lid;
}
";

/// One shader: its WGSL body, its uniform block and its storage buffers.
#[derive(Debug, Clone, Copy)]
pub struct ShaderSource {
    /// Path under `shaders/` without the extension, e.g. `favor/features`.
    pub name: &'static str,
    /// The WGSL file.
    pub body: &'static str,
    /// The helper files of `shaders/common/` it calls (written before it).
    pub libraries: &'static [&'static str],
    /// The uniform block's Rust struct: its name, `(field, byte offset)` and size in bytes.
    pub params: (&'static str, &'static [(&'static str, usize)], usize),
    /// The storage buffers at bindings 1.., as `name: access` or `name: access element` (element
    /// `f32` unless given): `"x: read"`, `"carry: read_write vec4<f32>"`.
    pub bindings: &'static [&'static str],
    declare_params: fn(&mut String),
}

impl ShaderSource {
    /// The entry point: the last component of the name.
    pub fn entry_point(&self) -> &'static str {
        self.name.rsplit('/').next().unwrap_or(self.name)
    }

    /// The whole WGSL module: the shared constants, the uniform block, the bindings, `element_index`,
    /// then the file.
    pub fn source(&self) -> String {
        let mut out = String::new();
        if self.bindings.iter().any(|b| parse_binding(b).2 == "f16") {
            out.push_str("enable f16;\n");
        }
        out.push_str("// Declarations written by ortho from its kernel contract (kernels.rs).\n");
        out.push_str(&shared_constants());
        (self.declare_params)(&mut out);
        out.push_str(&format!("@group(0) @binding(0) var<uniform> p: {};\n", self.params.0));
        for (i, binding) in self.bindings.iter().enumerate() {
            let (name, access, element) = parse_binding(binding);
            out.push_str(&format!("@group(0) @binding({}) var<storage, {access}> {name}: array<{element}>;\n", i + 1));
        }
        out.push_str(ELEMENT_INDEX);
        for library in self.libraries {
            out.push_str(library);
        }
        out.push_str("// shaders/");
        out.push_str(self.name);
        out.push_str(".wgsl\n");
        out.push_str(self.body);
        out
    }

    /// Whether each storage binding (1..) is only read.
    pub fn read_only(&self) -> impl Iterator<Item = bool> + '_ {
        self.bindings.iter().map(|b| parse_binding(b).1 == "read")
    }
}

/// `(name, access, element)` of `name: access [element]`.
fn parse_binding(binding: &str) -> (&str, &str, &str) {
    let (name, rest) = binding.split_once(':').unwrap_or((binding, "read"));
    let mut words = rest.split_whitespace();
    (name.trim(), words.next().unwrap_or("read"), words.next().unwrap_or("f32"))
}

/// A shader whose dispatches take a `P` as their uniform block.
#[derive(Debug)]
pub struct Shader<P> {
    pub source: ShaderSource,
    params: PhantomData<fn() -> P>,
}

macro_rules! shaders {
    ($($item:ident: $path:literal $(+ $library:ident)*, $params:ident, [$($binding:literal),* $(,)?];)*) => {
        $(pub(crate) const $item: Shader<$params> = Shader {
            source: ShaderSource {
                name: $path,
                body: include_str!(concat!("../../../shaders/", $path, ".wgsl")),
                libraries: &[$($library),*],
                params: (stringify!($params), <$params as Params>::FIELDS, std::mem::size_of::<$params>()),
                bindings: &[$($binding),*],
                declare_params: <$params as WgslType>::declare,
            },
            params: PhantomData,
        };)*
        /// Every shader of the engine.
        pub const SHADERS: &[ShaderSource] = &[$($item.source),*];
    };
}

/// The helper files of `shaders/` (no entry point) that shaders call, by path.
pub const LIBRARIES: &[&str] = &[
    "common/reduce",
    "common/operand",
    "common/gemm_store",
    "common/gemm_rows_body",
    "flow/expm_polynomial",
    "common/lu_steps",
    "common/lu_solve_steps",
    "ising/entry",
    "ising/front",
    "ising/separator",
    "express/fit_row",
    "express/fit_rows_body",
    "express/fit_columns_body",
    "common/broadcast4",
];
/// `workgroup_reduce`: the sum or maximum over a workgroup of `REDUCE_GROUP` invocations.
const REDUCE: &str = include_str!("../../../shaders/common/reduce.wgsl");
/// `base`: where batch `z` of a strided GEMM operand starts.
const OPERAND: &str = include_str!("../../../shaders/common/operand.wgsl");
/// `store_c`: the epilogue of every product variant.
const GEMM_STORE: &str = include_str!("../../../shaders/common/gemm_store.wgsl");
/// `lu_start`, `lu_pivot`: the steps both LU factorisations share.
const LU_STEPS: &str = include_str!("../../../shaders/common/lu_steps.wgsl");
/// `solve_column`, `swap_rows`: the steps both LU solves share.
const LU_SOLVE_STEPS: &str = include_str!("../../../shaders/common/lu_solve_steps.wgsl");
/// `kasteleyn_entry`: an entry of the scaled Kasteleyn matrix from the couplings.
const ISING_ENTRY: &str = include_str!("../../../shaders/ising/entry.wgsl");
/// `front_of`, `first_owned`: a front kernel's workgroup and its columns.
const ISING_FRONT: &str = include_str!("../../../shaders/ising/front.wgsl");
/// `separator_spin`, `pair_sign`, `pair_edge`: a glued piece's separator states and pairs.
const ISING_SEPARATOR: &str = include_str!("../../../shaders/ising/separator.wgsl");
/// `gemm_rows_body`: the product without workgroup memory, given an `a_rows`.
const GEMM_ROWS_BODY: &str = include_str!("../../../shaders/common/gemm_rows_body.wgsl");
/// `exp_plan` and `exp_polynomial`: the exponential's scaling and Taylor stage, given a `product` and a
/// `combine`.
const EXPM_POLYNOMIAL: &str = include_str!("../../../shaders/flow/expm_polynomial.wgsl");
/// `Span`, `D4`, `hold`: the rows of queries or keys one express invocation holds.
const EXPRESS_FIT_ROW: &str = include_str!("../../../shaders/express/fit_row.wgsl");
/// `fit_rows_body`, given a `load_keys` and a `tile_key`.
const EXPRESS_FIT_ROWS_BODY: &str = include_str!("../../../shaders/express/fit_rows_body.wgsl");
/// `fit_columns_body`, given a `load_queries`, a `tile_query` and a `tile_fit`.
const EXPRESS_FIT_COLUMNS_BODY: &str = include_str!("../../../shaders/express/fit_columns_body.wgsl");
/// `broadcast4`: lanes 0..4 of a subgroup's vec4, as the columns of a matrix in every lane.
const BROADCAST4: &str = include_str!("../../../shaders/common/broadcast4.wgsl");

params! {
    /// A GEMM operand: element `(i, p)` of batch `z` at `base(z) + i * rs + p * cs` (see `gemm.rs`).
    GemmOperand { off: u32, outer: u32, inner: u32, inner_stride: u32, rs: u32, cs: u32, _pad0: u32, _pad1: u32 }
    Gemm {
        m: u32, n: u32, k: u32, z_base: u32,
        a: GemmOperand, b: GemmOperand, c: GemmOperand,
        b_ones_col: u32, alpha: f32, beta: f32, diag: f32, a_ones_col: u32, splits: u32, k_slice: u32, batch: u32,
        upper: u32, a_triangle: u32, _pad0: u32, _pad1: u32,
    }
    GemmSum { m: u32, n: u32, batch: u32, splits: u32, c: GemmOperand, beta: f32, diag: f32, _pad0: u32, _pad1: u32 }
    Fill { count: u32, off: u32, value: f32, _pad: u32 }
    Convert { count: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
    Scan { rows: u32, problems: u32, row_stride: u32, _pad: u32 }
    CopyBlocks {
        outer: u32, inner: u32, len: u32, src_off: u32, src_outer: u32, src_inner: u32,
        dst_off: u32, dst_outer: u32, dst_inner: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
    RowStats {
        rows: u32, problems: u32, scratch_rows: u32, dim: u32, features: u32, kind: u32, x_off: u32, x_stride: u32,
        combine: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
    Features { rows: u32, problems: u32, scratch_rows: u32, features: u32, kernel: u32, eps: f32, _pad0: u32, _pad1: u32 }
    Mask { rows: u32, problems: u32, scratch_rows: u32, chunk: u32, chunks: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
    RowScale { rows: u32, problems: u32, scratch_rows: u32, width: u32, chunk: u32, is_key: u32, _pad0: u32, _pad1: u32 }
    StateScan {
        rows: u32, problems: u32, scratch_rows: u32, width: u32, chunk: u32, chunks: u32,
        reverse: u32, every: u32, first_chunk: u32, count: u32, state_off: u32, state_stride: u32,
    }
    Walk {
        rows: u32, problems: u32, scratch_rows: u32, features: u32, value_dim: u32, chunk: u32,
        first: u32, count: u32, len: u32, start: u32, z_base: u32, unit: f32,
    }
    Normalize { rows: u32, problems: u32, scratch_rows: u32, value_dim: u32, out_off: u32, out_stride: u32, _pad0: u32, _pad1: u32 }
    Exact {
        len: u32, dim: u32, value_dim: u32, causal: u32, z_base: u32, scale: f32, key_first: u32, key_last: u32,
        row_base: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
    GradPrep { rows: u32, problems: u32, scratch_rows: u32, value_dim: u32, start: u32, len: u32, _pad0: u32, _pad1: u32 }
    FeaturesBackward {
        rows: u32, problems: u32, scratch_rows: u32, dim: u32, features: u32, kernel: u32,
        is_key: u32, scale: f32, x_off: u32, x_stride: u32, accumulate: u32, _pad: u32,
    }
    SMatrix { batch: u32, l: u32, padded: u32, _pad: u32 }
    Blocks { batch: u32, n: u32, _pad0: u32, _pad1: u32 }
    Place { blocks: u32, side: u32, n: u32, pairs: u32 }
    Mirror { count: u32, l: u32, _pad0: u32, _pad1: u32 }
    Reflection { batch: u32, n: u32, l: u32, column: u32 }
    UnitColumns { batch: u32, n: u32, l: u32, mode: u32 }
    Expm { batch: u32, mode: u32, first: u32, pass_index: u32, method: u32, a_first: u32, alpha: f32, lanes: u32 }
    Combine { count: u32, _pad0: u32, _pad1: u32, _pad2: u32, c: [f32; 4] }
    Activate { count: u32, activation: u32, _pad0: u32, _pad1: u32 }
    Lu { batch: u32, n: u32, columns: u32, phase: u32, first: u32, last: u32, shared_b: u32, _pad: u32 }
    IsingDense { batch: u32, first: u32, order: u32, entries: u32, edges: u32, added: u32, marginals: u32, _pad: u32 }
    IsingFronts {
        first: u32, edges: u32, arena: u32, fronts: u32, level_first: u32, entries_at: u32, children_at: u32,
        step_first: u32, step_last: u32, adjoint: u32, sets: u32, pairs: u32, pairs_at: u32, terms_at: u32,
        _pad0: u32, _pad1: u32,
    }
    IsingGlued {
        sets: u32, first: u32, edges: u32, stride: u32, offset: u32, piece_edges: u32, states: u32, contracted: u32,
        gather_at: u32, separator: u32, pairs: u32, t01: u32, t02: u32, t12: u32, fixed: f32, configs: u32,
        width: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
    ExpressRows { len: u32, row0: u32, rows: u32, first: u32, entries: u32, tau: f32, _pad0: u32, _pad1: u32 }
    ExpressStream { len: u32, gradient: u32, tau: f32, _pad: u32 }
    Adam { count: u32, lr: f32, beta1: f32, beta2: f32, c1: f32, c2: f32, eps: f32, _pad: u32 }
    Regression { tasks: u32, points: u32, hidden: u32, params: u32, phi_off: u32, v_off: u32, scale: f32, _pad: u32 }
}

shaders! {
    GEMM: "common/gemm" + OPERAND + GEMM_STORE, Gemm, ["a: read", "b: read", "c: read_write"];
    GEMM_ROWS: "common/gemm_rows" + OPERAND + GEMM_STORE + GEMM_ROWS_BODY, Gemm, ["a: read", "b: read", "c: read_write"];
    GEMM_ROWS_SUBGROUP: "common/gemm_rows_subgroup" + OPERAND + GEMM_STORE + GEMM_ROWS_BODY, Gemm,
        ["a: read", "b: read", "c: read_write"];
    GEMM_LANES: "common/gemm_lanes" + OPERAND + GEMM_STORE, Gemm, ["a: read", "b: read", "c: read_write"];
    GEMM_F16: "common/gemm" + OPERAND + GEMM_STORE, Gemm, ["a: read f16", "b: read f16", "c: read_write"];
    GEMM_ROWS_F16: "common/gemm_rows" + OPERAND + GEMM_STORE + GEMM_ROWS_BODY, Gemm,
        ["a: read f16", "b: read f16", "c: read_write"];
    GEMM_ROWS_SUBGROUP_F16: "common/gemm_rows_subgroup" + OPERAND + GEMM_STORE + GEMM_ROWS_BODY, Gemm,
        ["a: read f16", "b: read f16", "c: read_write"];
    GEMM_LANES_F16: "common/gemm_lanes" + OPERAND + GEMM_STORE, Gemm, ["a: read f16", "b: read f16", "c: read_write"];
    GEMM_SUM: "common/gemm_sum" + OPERAND, GemmSum, ["partials: read", "c: read_write"];
    FILL: "common/fill", Fill, ["values: read_write"];
    TO_F16: "common/to_f16", Convert, ["src: read", "dst: read_write u32"];
    FROM_F16: "common/from_f16", Convert, ["src: read u32", "dst: read_write"];
    SCAN_MAX: "common/scan_max", Scan, ["values: read", "prefix: read_write", "before: read_write", "carried: read_write"];
    COPY: "common/copy", CopyBlocks, ["src: read", "dst: read_write"];
    ROW_STATS: "favor/row_stats" + REDUCE, RowStats, ["x: read", "a: read", "row_max: read_write", "offset: read_write"];
    FEATURES: "favor/features", Features, ["a: read", "row_max: read", "phi: read_write"];
    CAUSAL_MASK: "favor/causal_mask", Mask, ["offset: read", "gamma: read", "scores: read_write"];
    ROW_SCALE: "favor/row_scale", RowScale, ["offset: read", "gamma: read", "before: read", "phi: read_write"];
    STATE_SCAN: "favor/state_scan", StateScan, ["gamma: read", "before: read", "checkpoints: read", "deltas: read_write", "state: read_write"];
    STATE_WALK: "favor/state_walk", Walk, ["phi_q: read", "phi_k: read", "v: read", "gamma: read", "before: read", "state: read_write", "num: read_write", "lost: read_write"];
    NORMALIZE: "favor/normalize", Normalize, ["num: read", "out: read_write"];
    EXACT: "favor/exact", Exact, ["q: read", "k: read", "v: read", "out: read_write", "carry: read_write vec4<f32>"];
    GRAD_PREP: "favor/grad_prep", GradPrep, ["out: read", "den: read", "grad: read", "gt: read_write"];
    FEATURES_BACKWARD: "favor/features_backward" + REDUCE, FeaturesBackward, ["x: read", "a: read", "phi: read", "dphi: read", "da: read_write", "dx: read_write"];
    S_MATRIX: "cwy/s_matrix", SMatrix, ["gram: read", "s: read_write", "inverse: read_write"];
    TRI_INVERSE_BLOCKS: "cwy/tri_inverse_blocks", Blocks, ["s: read", "inverse: read_write"];
    PLACE_BLOCKS: "cwy/place_blocks", Place, ["joined: read", "inverse: read_write"];
    MIRROR_UPPER: "cwy/mirror_upper", Mirror, ["b: read", "out: read_write"];
    HOUSEHOLDER: "cwy/householder", Reflection, ["u: read", "q: read_write"];
    UNIT_COLUMNS: "cwy/unit_columns" + REDUCE, UnitColumns, ["src: read", "unit: read_write", "norms: read_write", "dst: read_write"];
    EXPM: "flow/expm" + EXPM_POLYNOMIAL, Expm, ["a: read", "work: read_write", "out: read_write", "plans: read_write u32"];
    EXPM_PRIVATE: "flow/expm_private" + EXPM_POLYNOMIAL, Expm, ["a: read", "out: read_write"];
    COMBINE: "flow/combine", Combine, ["x0: read", "x1: read", "x2: read", "x3: read", "out: read_write"];
    ACTIVATE: "flow/activate", Activate, ["x: read", "out: read_write"];
    LU: "common/lu" + LU_STEPS, Lu, ["a: read", "factors: read_write", "pivots: read_write", "det: read_write"];
    LU_SOLVE: "common/lu_solve" + LU_SOLVE_STEPS, Lu, ["factors: read", "pivots: read", "b: read", "x: read_write"];
    LU_PRIVATE: "common/lu_private" + LU_STEPS, Lu, ["a: read", "factors: read_write", "pivots: read_write", "det: read_write"];
    LU_SOLVE_PRIVATE: "common/lu_solve_private" + LU_SOLVE_STEPS, Lu, ["factors: read", "pivots: read", "b: read", "x: read_write"];
    KASTELEYN: "ising/kasteleyn" + ISING_ENTRY, IsingDense, ["couplings: read", "entries: read u32", "k: read_write"];
    FRONT_QR: "ising/front_qr" + ISING_ENTRY + ISING_FRONT, IsingFronts,
        ["couplings: read", "table: read u32", "arena: read_write", "slots: read_write"];
    FRONT_QR_ADJOINT: "ising/front_qr_adjoint" + ISING_FRONT, IsingFronts, ["table: read u32", "arena: read_write", "adjoint: read_write"];
    FRONT_MARGINALS: "ising/front_marginals" + ISING_ENTRY, IsingFronts,
        ["couplings: read", "table: read u32", "adjoint: read", "marginals: read_write"];
    GLUED_COUPLINGS: "ising/glued_couplings", IsingGlued, ["couplings: read", "table: read u32", "agg: read_write"];
    GLUED_GATHER: "ising/glued_gather", IsingGlued,
        ["table: read u32", "agg: read", "x: read_write", "constant: read_write"];
    GLUED_FOLD: "ising/glued_fold" + ISING_SEPARATOR, IsingGlued,
        ["piece_log_z: read", "constant: read", "total: read_write", "agg: read_write"];
    GLUED_MARGINALS: "ising/glued_marginals" + ISING_SEPARATOR, IsingGlued,
        ["table: read u32", "conditional: read", "piece_marginals: read_write", "marginals: read_write"];
    SEPARATOR_STATES: "ising/separator_states" + ISING_SEPARATOR, IsingGlued, ["values: read_write"];
    ENUMERATED_ROWS: "ising/enumerated_rows" + REDUCE, IsingGlued, ["energies: read_write", "piece_log_z: read_write"];
    READOUT: "ising/readout", IsingDense,
        ["couplings: read", "det: read", "x: read", "pairs: read u32", "log_z: read_write", "marginals: read_write"];
    SUPPORT_GATHER: "express/support_gather", ExpressRows,
        ["entry_rows: read u32", "columns: read u32", "z: read_write", "support: read_write"];
    SUPPORT_SCATTER: "express/support_scatter", ExpressRows,
        ["entry_rows: read u32", "columns: read u32", "targets: read", "fits: read", "support: read", "z: read_write"];
    ROW_FIT: "express/row_fit" + REDUCE, ExpressRows,
        ["starts: read u32", "targets: read", "z: read", "support: read", "stats: read_write", "fits: read_write"];
    ROW_GRADIENT: "express/row_gradient", ExpressRows, ["fits: read", "z: read_write"];
    FIT_ROWS: "express/fit_rows" + EXPRESS_FIT_ROW + EXPRESS_FIT_ROWS_BODY, ExpressStream, ["starts: read u32", "columns: read u32", "targets: read", "q: read vec4<f32>", "k: read vec4<f32>", "stats: read_write", "fits: read_write vec4<f32>", "dq: read_write vec4<f32>"];
    FIT_ROWS_SUBGROUP: "express/fit_rows_subgroup" + EXPRESS_FIT_ROW + EXPRESS_FIT_ROWS_BODY + BROADCAST4, ExpressStream,
        ["starts: read u32", "columns: read u32", "targets: read", "q: read vec4<f32>", "k: read vec4<f32>", "stats: read_write", "fits: read_write vec4<f32>", "dq: read_write vec4<f32>"];
    FIT_COLUMNS: "express/fit_columns" + EXPRESS_FIT_ROW + EXPRESS_FIT_COLUMNS_BODY, ExpressStream, ["col_starts: read u32", "col_entries: read u32", "entry_rows: read u32", "targets: read", "q: read vec4<f32>", "k: read vec4<f32>", "fits: read vec4<f32>", "dk: read_write vec4<f32>"];
    FIT_COLUMNS_SUBGROUP: "express/fit_columns_subgroup" + EXPRESS_FIT_ROW + EXPRESS_FIT_COLUMNS_BODY + BROADCAST4,
        ExpressStream, ["col_starts: read u32", "col_entries: read u32", "entry_rows: read u32", "targets: read", "q: read vec4<f32>", "k: read vec4<f32>", "fits: read vec4<f32>", "dk: read_write vec4<f32>"];
    ADAM: "express/adam", Adam, ["g: read", "m: read_write", "v: read_write", "x: read_write"];
    REGRESSION_RESIDUAL: "bilevel/regression_residual", Regression, ["points: read", "r: read_write", "loss: read_write"];
    HIDDEN_GRADIENT: "bilevel/hidden_gradient", Regression, ["r: read", "a: read", "phi: read", "g: read_write"];
    HIDDEN_TANGENT: "bilevel/hidden_tangent", Regression, ["a: read", "ra: read_write"];
    HIDDEN_HVP: "bilevel/hidden_hvp", Regression,
        ["r: read", "rr: read", "a: read", "ra: read", "phi: read", "v: read", "g: read_write"];
}
