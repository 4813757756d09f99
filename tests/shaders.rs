//! Every WGSL file of the registry parses and validates with naga, and its uniform block is laid out
//! exactly like the Rust struct the engine writes into it: no GPU needed.
use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_shader_validates() {
    for shader in ortho::SHADERS {
        let source = shader.source();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(&source)));
        // Variants that use subgroups or f16 are only created on devices with them (gemm.rs checks).
        let mut capabilities = Capabilities::empty();
        capabilities.set(Capabilities::SUBGROUP, shader.name.ends_with("_subgroup"));
        capabilities.set(Capabilities::SHADER_FLOAT16, source.starts_with("enable f16;"));
        Validator::new(ValidationFlags::all(), capabilities)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(&source)));
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
                let known = ortho::SHADERS.iter().any(|s| s.name == name) || ortho::LIBRARIES.contains(&name.as_str());
                assert!(known, "{name}.wgsl is not in ortho::SHADERS or ortho::LIBRARIES");
            }
        }
    }
}

#[test]
fn every_uniform_block_matches_its_rust_struct() {
    for shader in ortho::SHADERS {
        let module = naga::front::wgsl::parse_str(&shader.source()).expect("parses");
        let uniforms: Vec<_> =
            module.global_variables.iter().filter(|(_, g)| g.space == naga::AddressSpace::Uniform).collect();
        assert_eq!(uniforms.len(), 1, "{}: one uniform block", shader.name);
        let (_, var) = uniforms[0];
        let binding = var.binding.as_ref().expect("bound");
        assert_eq!((binding.group, binding.binding), (0, 0), "{}: the uniform block is binding 0", shader.name);
        let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
            panic!("{}: the uniform block is not a struct", shader.name)
        };
        let (rust_name, fields, size) = shader.params;
        let wgsl: Vec<(&str, usize)> =
            members.iter().map(|m| (m.name.as_deref().unwrap_or("?"), m.offset as usize)).collect();
        assert_eq!(wgsl, fields.to_vec(), "{}: fields of {rust_name} against the WGSL struct", shader.name);
        assert_eq!(*span as usize, size, "{}: size of {rust_name}", shader.name);
    }
}
