// What express/fit_rows and express/fit_columns share. An invocation holds 4 consecutive rows of q
// (or k), so that every value it loads from the other side serves 4 dot products; the other side
// streams past in tiles of 4 rows, which the entry point loads: in every invocation
// (`fit_rows.wgsl`), or one row per subgroup lane and broadcast (`fit_rows_subgroup.wgsl`), since
// lavapipe loads lane by lane. Rows are D4 vec4s (D4, an override constant, at most EXPRESS_MAX_D4)
// of a zero-padded row. Both sides are held as 4 x 4 matrices per vec4 c, indexed by c alone, in
// loops the compiler unrolls: an array indexed by anything else would leave registers for memory.
// No invocation returns before the last tile: a subgroup's lanes all take part in its broadcasts.

override D4: u32;
// Span[c]: column t is vec4 c of row t of a span of 4 rows.
alias Span = array<mat4x4<f32>, EXPRESS_MAX_D4>;

// The transposed span of rows first.. first + 4 of q (or k): row r of held[c] is vec4 c of row
// first + r (the last row repeated past p.len).
fn hold(held: ptr<function, Span>, first: u32, from_keys: bool) {
    let rows = span_rows(first);
    for (var c = 0u; c < D4; c++) {
        if (from_keys) {
            (*held)[c] = transpose(mat4x4<f32>(k[rows.x + c], k[rows.y + c], k[rows.z + c], k[rows.w + c]));
        } else {
            (*held)[c] = transpose(mat4x4<f32>(q[rows.x + c], q[rows.y + c], q[rows.z + c], q[rows.w + c]));
        }
    }
}

// The matrix with column t of m scaled by s[t].
fn scale_columns(m: mat4x4<f32>, s: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(m[0] * s.x, m[1] * s.y, m[2] * s.z, m[3] * s.w);
}

// Where rows first.. first + 4 of q or k start, in vec4s (the last row repeated past p.len).
fn span_rows(first: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.len - 1u)) * D4;
}

// The support: 4 rows' next support entries (`next`, up to `end`) and the streamed rows they name
// (`next_row`, p.len past the last). A body's `support_at(e)` names entry e's streamed row; each
// body lists its entries sorted by it.
struct Support { next: vec4<u32>, end: vec4<u32>, next_row: vec4<u32> }

fn support_rows(s: Support) -> vec4<u32> {
    let at = min(s.next, s.end - 1u);
    let rows = vec4<u32>(support_at(at.x), support_at(at.y), support_at(at.z), support_at(at.w));
    return select(vec4<u32>(p.len), rows, s.next < s.end);
}

fn start_support(first: vec4<u32>, end: vec4<u32>) -> Support {
    var s = Support(first, end, vec4<u32>());
    s.next_row = support_rows(s);
    return s;
}

// Whether streamed row j is on each held row's support, stepping past it where it is.
fn on_support(s: ptr<function, Support>, j: u32) -> vec4<bool> {
    let hit = (*s).next_row == vec4<u32>(j);
    if (any(hit)) {
        (*s).next = select((*s).next, (*s).next + 1u, hit);
        (*s).next_row = select((*s).next_row, support_rows(*s), hit);
    }
    return hit;
}

// The logits z (column t: streamed row j0 + t against the 4 held rows) with every pair on the
// support or past p.len at LOWEST, and `keep` (column t: 1 where kept, 0 elsewhere).
struct Masked { z: mat4x4<f32>, keep: mat4x4<f32> }

fn mask_tile(z: mat4x4<f32>, s: ptr<function, Support>, j0: u32) -> Masked {
    var out: Masked;
    for (var t = 0u; t < 4u; t++) {
        let keep = !on_support(s, j0 + t) & vec4<bool>(j0 + t < p.len);
        out.z[t] = select(vec4<f32>(LOWEST), z[t], keep);
        out.keep[t] = select(vec4<f32>(), vec4<f32>(1.0), keep);
    }
    return out;
}
