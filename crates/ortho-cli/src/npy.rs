//! `.npy` files in and out: f32, f64 and f16 inputs become f32 tensors; outputs are f32.

use npyz::WriterBuilder;
use ortho::Tensor;
use std::path::Path;

pub fn read(path: &Path, name: &str) -> Result<Tensor<f32>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{name} ({}): {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| at(&e))?;
    let file = npyz::NpyFile::new(&bytes[..]).map_err(|e| at(&e))?;
    if file.order() == npyz::Order::Fortran {
        return Err(at(&"Fortran-ordered arrays are not supported; save a C-ordered array (np.ascontiguousarray)"));
    }
    let shape: Vec<usize> = file.shape().iter().map(|&n| n as usize).collect();
    let descr = file.dtype().descr().trim_matches('\'').to_string();
    let data: Vec<f32> = match descr.trim_start_matches(['<', '=', '|']) {
        "f4" => file.into_vec::<f32>().map_err(|e| at(&e))?,
        "f2" => file.into_vec::<half::f16>().map_err(|e| at(&e))?.into_iter().map(f32::from).collect(),
        "f8" => {
            let wide = file.into_vec::<f64>().map_err(|e| at(&e))?;
            if let Some(i) = wide.iter().position(|x| x.is_finite() && x.abs() > f32::MAX as f64) {
                let t = Tensor::<f64>::new(&shape, wide.clone()).map_err(|e| at(&e))?;
                return Err(at(&format!("value {:e} at index {:?} does not fit in f32", wide[i], t.unravel(i))));
            }
            wide.into_iter().map(|x| x as f32).collect()
        }
        _ => {
            return Err(at(&format!("dtype {descr} is not supported; use little-endian float32, float64 or float16")));
        }
    };
    Tensor::new(&shape, data).map_err(|e| at(&e))
}

pub fn write(path: &Path, t: &Tensor<f32>) -> Result<(), String> {
    let at = |e: &dyn std::fmt::Display| format!("writing {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| at(&e))?;
    let shape: Vec<u64> = t.shape().iter().map(|&n| n as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| at(&e))?;
    writer.extend(t.data().iter().copied()).map_err(|e| at(&e))?;
    writer.finish().map_err(|e| at(&e))
}
