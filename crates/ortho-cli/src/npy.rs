//! `.npy` files in and out.
//!
//! Inputs: float32, float64, float16 and integer arrays, little- or big-endian, C- or Fortran-ordered
//! (what `np.save` writes for a transposed array), become C-ordered f32 tensors; a value f32 cannot
//! hold is refused. The header's element count is checked (with checked arithmetic) against the bytes
//! the file holds before anything is allocated, so a truncated file or a lying header is an error,
//! not a panic or an unbounded allocation.
//!
//! Outputs are all or nothing: see [`Outputs`].

use npyz::{TypeChar, WriterBuilder};
use ortho::Tensor;
use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};

pub fn read(path: &Path, name: &str) -> Result<Tensor<f32>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{name} ({}): {e}", path.display());
    let (shape, fortran, file, ty, descr) = open(path, name)?;
    let data = values(file, ty.type_char(), ty.size_field(), &descr).map_err(|e| at(&e))?;
    let data = if fortran { c_order(&shape, &data) } else { data };
    let t = Tensor::new(&shape, data).map_err(|e| at(&e))?;
    Ok(t)
}

/// A float or integer array as f16: f16 files exactly, others rounded to the nearest f16 (ties to
/// even, from the file's own values), a finite value past f16's range (65504) refused.
pub fn read_f16(path: &Path, name: &str) -> Result<Tensor<half::f16>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{name} ({}): {e}", path.display());
    let (shape, data) = read_f64(path, name)?;
    if let Some(i) = data.iter().position(|x| x.is_finite() && !half::f16::from_f64(*x).is_finite()) {
        return Err(at(&format!(
            "value {:e} at flat index {i} does not fit in f16 (largest 65504); run with --dtype f32",
            data[i]
        )));
    }
    Tensor::new(&shape, data.into_iter().map(half::f16::from_f64).collect()).map_err(|e| at(&e))
}

/// A float or integer array as f64 (integers only where f64 holds them exactly), in C order.
pub fn read_f64(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f64>), String> {
    let at = |e: &dyn std::fmt::Display| format!("{name} ({}): {e}", path.display());
    let (shape, fortran, file, ty, descr) = open(path, name)?;
    let data: Vec<f64> = match (ty.type_char(), ty.size_field()) {
        (TypeChar::Float, 8) => file.into_vec::<f64>().map_err(|e| at(&e))?,
        (TypeChar::Int | TypeChar::Uint, _) => {
            let ids = integer_values(file, ty.type_char(), ty.size_field(), &descr).map_err(|e| at(&e))?;
            match ids.iter().position(|&x| x as f64 as i128 != x) {
                Some(i) => {
                    return Err(at(&format!("integer {} at flat index {i} does not fit in f64 exactly", ids[i])));
                }
                None => ids.into_iter().map(|x| x as f64).collect(),
            }
        }
        _ => values(file, ty.type_char(), ty.size_field(), &descr)
            .map_err(|e| at(&e))?
            .into_iter()
            .map(f64::from)
            .collect(),
    };
    Ok((shape.clone(), if fortran { c_order(&shape, &data) } else { data }))
}

/// An integer array (any width, signed or not) as i64, in C order; float arrays are refused.
pub fn read_i64(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<i64>), String> {
    let at = |e: &dyn std::fmt::Display| format!("{name} ({}): {e}", path.display());
    let (shape, fortran, file, ty, descr) = open(path, name)?;
    if !matches!(ty.type_char(), TypeChar::Int | TypeChar::Uint) {
        return Err(at(&format!("dtype {descr} is not an integer type; save the array as int32 or int64")));
    }
    let wide = integer_values(file, ty.type_char(), ty.size_field(), &descr).map_err(|e| at(&e))?;
    let data: Vec<i64> = match wide.iter().position(|&x| i64::try_from(x).is_err()) {
        Some(i) => return Err(at(&format!("integer {} at flat index {i} does not fit in i64", wide[i]))),
        None => wide.into_iter().map(|x| x as i64).collect(),
    };
    Ok((shape.clone(), if fortran { c_order(&shape, &data) } else { data }))
}

type Opened = (Vec<usize>, bool, npyz::NpyFile<BufReader<File>>, npyz::TypeStr, String);

/// The array's shape, Fortran order, reader and plain dtype, once the header's element count matches
/// the bytes the file holds.
fn open(path: &Path, name: &str) -> Result<Opened, String> {
    let at = |e: &dyn std::fmt::Display| format!("{name} ({}): {e}", path.display());
    let file = File::open(path).map_err(|e| at(&e))?;
    let size = file.metadata().map_err(|e| at(&e))?.len();
    let mut reader = BufReader::new(file);
    let header = npyz::NpyHeader::from_reader(&mut reader).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => at(&"the file ends inside its header: it is truncated"),
        _ => at(&format!("not a .npy file: {e}")),
    })?;
    let data_bytes = size - reader.stream_position().map_err(|e| at(&e))?;
    let shape: Vec<u64> = header.shape().to_vec();
    let descr = header.dtype().descr().trim_matches('\'').to_string();
    let npyz::DType::Plain(ty) = header.dtype() else {
        return Err(at(&format!("dtype {descr} is not supported; save a plain float or integer array")));
    };
    let item = ty.size_field();
    let count = shape.iter().try_fold(1u64, |all, &n| all.checked_mul(n));
    let needed = count.and_then(|n| n.checked_mul(item));
    if needed != Some(data_bytes) {
        let claimed = match needed {
            Some(bytes) => format!("{bytes} bytes of data"),
            None => "more elements than any file can hold".to_string(),
        };
        return Err(at(&format!(
            "the header claims shape {shape:?} of {descr} ({claimed}), but the file holds {data_bytes} bytes after \
             the header: the file is truncated or its header is wrong"
        )));
    }
    let shape: Vec<usize> = shape.iter().map(|&n| n as usize).collect();
    let fortran = header.order() == npyz::Order::Fortran;
    Ok((shape, fortran, npyz::NpyFile::with_header(header, reader), ty, descr))
}

/// The values of an integer array, widened.
fn integer_values<R: std::io::Read>(
    file: npyz::NpyFile<R>,
    kind: TypeChar,
    size: u64,
    descr: &str,
) -> Result<Vec<i128>, String> {
    fn all<T: npyz::Deserialize + Into<i128>, R: std::io::Read>(file: npyz::NpyFile<R>) -> Result<Vec<i128>, String> {
        Ok(file.into_vec::<T>().map_err(|e| e.to_string())?.into_iter().map(Into::into).collect())
    }
    match (kind, size) {
        (TypeChar::Int, 1) => all::<i8, R>(file),
        (TypeChar::Int, 2) => all::<i16, R>(file),
        (TypeChar::Int, 4) => all::<i32, R>(file),
        (TypeChar::Int, 8) => all::<i64, R>(file),
        (TypeChar::Uint, 1) => all::<u8, R>(file),
        (TypeChar::Uint, 2) => all::<u16, R>(file),
        (TypeChar::Uint, 4) => all::<u32, R>(file),
        (TypeChar::Uint, 8) => all::<u64, R>(file),
        _ => Err(format!("dtype {descr} is not an integer type")),
    }
}

/// The values of `file` as f32: floats rounded (a finite value past f32's range is refused), integers
/// only where f32 holds them exactly.
fn values<R: std::io::Read>(
    file: npyz::NpyFile<R>,
    kind: TypeChar,
    size: u64,
    descr: &str,
) -> Result<Vec<f32>, String> {
    fn all<T: npyz::Deserialize, R: std::io::Read>(file: npyz::NpyFile<R>) -> Result<Vec<T>, String> {
        file.into_vec::<T>().map_err(|e| e.to_string())
    }
    fn floats(values: Vec<f64>) -> Result<Vec<f32>, String> {
        match values.iter().position(|x| x.is_finite() && x.abs() > f32::MAX as f64) {
            Some(i) => Err(format!("value {:e} at flat index {i} does not fit in f32", values[i])),
            None => Ok(values.into_iter().map(|x| x as f32).collect()),
        }
    }
    fn integers(values: Vec<i128>) -> Result<Vec<f32>, String> {
        match values.iter().position(|&x| x as f32 as i128 != x) {
            Some(i) => Err(format!("integer {} at flat index {i} does not fit in f32 exactly", values[i])),
            None => Ok(values.into_iter().map(|x| x as f32).collect()),
        }
    }
    match (kind, size) {
        (TypeChar::Float, 4) => all::<f32, R>(file),
        (TypeChar::Float, 2) => Ok(all::<half::f16, R>(file)?.into_iter().map(f32::from).collect()),
        (TypeChar::Float, 8) => floats(all::<f64, R>(file)?),
        (TypeChar::Int | TypeChar::Uint, _) => integers(integer_values(file, kind, size, descr)?),
        _ => Err(format!("dtype {descr} is not supported; use float16, float32, float64 or an integer type")),
    }
}

/// Fortran-ordered (column-major) `data` of `shape` in C (row-major) order.
fn c_order<T: Copy>(shape: &[usize], data: &[T]) -> Vec<T> {
    let mut strides = vec![1; shape.len()];
    for axis in 1..shape.len() {
        strides[axis] = strides[axis - 1] * shape[axis - 1];
    }
    (0..data.len())
        .map(|flat| {
            let (mut rest, mut at) = (flat, 0);
            for axis in (0..shape.len()).rev() {
                at += (rest % shape[axis]) * strides[axis];
                rest /= shape[axis];
            }
            data[at]
        })
        .collect()
}

/// The output files of one run, all or nothing: each is written to a temporary file beside its
/// target, created before the work starts (so an unwritable path fails before any work), and renamed
/// into place only once every output is written. A run that fails or is killed leaves every target as
/// it was; two runs writing one path each replace it whole. Two outputs of one run may not share a
/// path.
pub struct Outputs {
    pending: Vec<(PathBuf, PathBuf, Option<File>)>,
}

impl Outputs {
    /// Reserves `(what, path)` for every output of the run.
    pub fn create(paths: &[(&str, &Path)]) -> Result<Outputs, String> {
        let mut outputs = Outputs { pending: Vec::new() };
        for (i, &(what, path)) in paths.iter().enumerate() {
            if let Some((other, _)) = paths[..i].iter().find(|(_, p)| same_file(p, path)) {
                return Err(format!(
                    "--{other} and --{what} are the same file ({}); give each output its own path",
                    path.display()
                ));
            }
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = path.file_name().ok_or_else(|| format!("--{what} {}: not a file path", path.display()))?;
            let temp = dir.join(format!(".{}.{}.{i}.tmp", name.to_string_lossy(), std::process::id()));
            let file =
                File::create(&temp).map_err(|e| format!("--{what} {}: cannot write there: {e}", path.display()))?;
            outputs.pending.push((path.to_path_buf(), temp, Some(file)));
        }
        Ok(outputs)
    }

    /// Writes output `i` (in the order given to [`Outputs::create`]) to its temporary file.
    pub fn write(&mut self, i: usize, t: &Tensor<f32>) -> Result<(), String> {
        self.write_values(i, t.shape(), t.data())
    }

    /// Writes output `i` as an array of `shape` (`[]`: a 0-d array) of any plain dtype.
    pub fn write_values<T: npyz::AutoSerialize + Copy>(
        &mut self,
        i: usize,
        shape: &[usize],
        data: &[T],
    ) -> Result<(), String> {
        let (path, _, file) = &mut self.pending[i];
        let at = |e: &dyn std::fmt::Display| format!("writing {}: {e}", path.display());
        let file = file.take().ok_or_else(|| at(&"written twice"))?;
        let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .map_err(|e| at(&e))?;
        writer.extend(data.iter().copied()).map_err(|e| at(&e))?;
        writer.finish().map_err(|e| at(&e))
    }

    /// Renames every written output into place (an output never written is dropped).
    pub fn commit(mut self) -> Result<(), String> {
        for (path, temp, file) in std::mem::take(&mut self.pending) {
            if file.is_some() {
                let _ = std::fs::remove_file(&temp);
                continue;
            }
            std::fs::rename(&temp, &path).map_err(|e| format!("moving the output into {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for (_, temp, _) in &self.pending {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Whether `a` and `b` name one file (the same path, or the same existing file under two names).
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.canonicalize().ok().map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    a == b || matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid file of `[3, 4]` float32 values, then thousands of seeded corruptions of it: bytes
    /// flipped in the header and the data, the file cut short or extended, header lengths and shapes
    /// rewritten. Every one reads to a tensor whose size matches its shape, or to an error; none
    /// panics.
    #[test]
    fn corrupted_files_never_panic() {
        let dir = std::env::temp_dir().join(format!("ortho-npy-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.npy");
        let t = Tensor::new(&[3, 4], (0..12).map(|x| x as f32).collect()).unwrap();
        let mut out = Outputs::create(&[("out", &good)]).unwrap();
        out.write(0, &t).unwrap();
        out.commit().unwrap();
        let bytes = std::fs::read(&good).unwrap();
        assert_eq!(read(&good, "x").unwrap().data(), t.data());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let shapes = ["(3, 4)", "(4, 3, 2)", "()", "(0,)", "(18446744073709551615, 2)", "(-1, 4)", "(3, 4", "[3, 4]"];
        let path = dir.join("bad.npy");
        for case in 0..3000 {
            let mut b = bytes.clone();
            match case % 5 {
                0 => {
                    let i = next(b.len());
                    b[i] = next(256) as u8;
                }
                1 => b.truncate(next(b.len())),
                2 => b.extend((0..next(64)).map(|_| next(256) as u8)),
                3 => {
                    let i = 8 + next(2);
                    b[i] = next(256) as u8;
                }
                _ => {
                    let header = String::from_utf8_lossy(&b[10..128]).replace("(3, 4)", shapes[next(shapes.len())]);
                    b = [&b[..10], header.as_bytes(), &b[128..]].concat();
                }
            }
            std::fs::write(&path, &b).unwrap();
            if let Ok(t) = read(&path, "x") {
                assert_eq!(t.len(), t.shape().iter().product::<usize>(), "case {case}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
