//! Every WGSL file of the registry parses and validates with naga: no GPU needed.
use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_shader_validates() {
    for shader in ortho::SHADERS {
        let module = naga::front::wgsl::parse_str(shader.source)
            .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
        assert!(
            module.entry_points.iter().any(|e| e.name == shader.entry_point()),
            "{} has no entry point {}",
            shader.name,
            shader.entry_point()
        );
    }
}

#[test]
fn every_wgsl_file_is_registered() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "wgsl") {
                let name = path.strip_prefix(&root).unwrap().with_extension("");
                let name = name.to_str().unwrap().replace('\\', "/");
                assert!(ortho::SHADERS.iter().any(|s| s.name == name), "{name}.wgsl is not in ortho::SHADERS");
            }
        }
    }
}
