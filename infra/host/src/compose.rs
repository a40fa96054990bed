//! Composition with wac-graph: one component made of several, each import
//! of a part satisfied by a part before it that exports the same name.
//!
//! - [`with_dependencies`]: what `berth serve` runs, as Spin does for
//!   `[component.<id>.dependencies]` (the router and its endpoint
//!   families); Berth's capabilities stay imports, the host provides them.
//! - [`for_spin`]: the Spin build (`berth build-spin`, `make spin`): the
//!   same, plus the adapters of `wit/adapters.wit`, so that what remains
//!   imported is Spin's platform only (WASI, `spin:postgres`,
//!   `spin:variables`). One instance of each adapter serves every part.
//!
//! Imports no part satisfies become imports of the whole, merged by name.

use crate::manifest;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use wac_graph::{CompositionGraph, EncodeOptions, PackageId, types::Package};

/// The adapters' files in a build directory, in the order they are
/// instantiated (each may use those before it).
pub const SPIN_ADAPTERS: &[&str] = &[
    "config_variables.wasm",
    "credentials_variables.wasm",
    "metadata_postgres.wasm",
    "blobs_s3.wasm",
];

/// `c` with its dependencies plugged in.
pub fn with_dependencies(c: &manifest::Component) -> Result<Vec<u8>> {
    compose(c, &[])
}

/// `c` with its dependencies and the Spin adapters (files in
/// `adapters_dir`, see [`SPIN_ADAPTERS`]) plugged in, without DWARF
/// sections (the line tables of every part are nine tenths of the bytes a
/// Spin registry push would carry; the `name` sections stay, so traps
/// still name functions).
pub fn for_spin(c: &manifest::Component, adapters_dir: &Path) -> Result<Vec<u8>> {
    let adapters: Vec<PathBuf> = SPIN_ADAPTERS.iter().map(|f| adapters_dir.join(f)).collect();
    without_debug_sections(&compose(c, &adapters)?)
}

/// `component` with every `.debug_*` custom section left out, in it and
/// in the modules and components it nests.
fn without_debug_sections(component: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::reencode::{self, Reencode, ReencodeComponent};
    struct Strip;
    impl Reencode for Strip {
        type Error = std::convert::Infallible;
        fn parse_custom_section(
            &mut self,
            module: &mut wasm_encoder::Module,
            section: wasmparser::CustomSectionReader<'_>,
        ) -> Result<(), reencode::Error<Self::Error>> {
            if section.name().starts_with(".debug_") {
                return Ok(());
            }
            reencode::utils::parse_custom_section(self, module, section)
        }
    }
    impl ReencodeComponent for Strip {
        fn parse_component_custom_section(
            &mut self,
            component: &mut wasm_encoder::Component,
            section: wasmparser::CustomSectionReader<'_>,
        ) -> Result<(), reencode::Error<Self::Error>> {
            if section.name().starts_with(".debug_") {
                return Ok(());
            }
            reencode::component_utils::parse_component_custom_section(self, component, section)
        }
    }
    let mut out = wasm_encoder::Component::new();
    Strip
        .parse_component(&mut out, wasmparser::Parser::new(0), component)
        .map_err(|e| anyhow::anyhow!("stripping debug sections: {e:?}"))?;
    Ok(out.finish())
}

fn compose(c: &manifest::Component, adapters: &[PathBuf]) -> Result<Vec<u8>> {
    fn load(graph: &mut CompositionGraph, name: String, path: &Path) -> Result<PackageId> {
        let package = Package::from_file(&name, None, path, graph.types_mut())
            .with_context(|| format!("loading {}", path.display()))?;
        Ok(graph.register_package(package)?)
    }
    let mut graph = CompositionGraph::new();
    let mut parts = Vec::new();
    for (i, path) in adapters.iter().enumerate() {
        parts.push(load(&mut graph, format!("berth:adapter{i}"), path)?);
    }
    for (i, (import, path)) in c.dependencies.iter().enumerate() {
        let dep = load(&mut graph, format!("berth:dep{i}"), path)
            .with_context(|| format!("loading dependency {import}"))?;
        if !graph.types()[graph[dep].ty()].exports.contains_key(import) {
            anyhow::bail!("{} does not export {import}", path.display());
        }
        parts.push(dep);
    }
    let main = load(&mut graph, "berth:main".into(), &c.source)?;
    // (instance, its package) of the parts instantiated so far.
    let mut made: Vec<(wac_graph::NodeId, PackageId)> = Vec::new();
    for package in parts.into_iter().chain([main]) {
        let instance = graph.instantiate(package);
        let imports: Vec<String> = graph.types()[graph[package].ty()]
            .imports
            .keys()
            .cloned()
            .collect();
        for name in imports {
            let provider = made
                .iter()
                .find(|(_, p)| graph.types()[graph[*p].ty()].exports.contains_key(&name));
            if let Some(&(from, _)) = provider {
                let export = graph.alias_instance_export(from, &name)?;
                graph
                    .set_instantiation_argument(instance, &name, export)
                    .with_context(|| format!("plugging {name}"))?;
            }
        }
        made.push((instance, package));
    }
    let (instance, _) = *made.last().expect("the main component");
    for name in graph.types()[graph[main].ty()]
        .exports
        .keys()
        .cloned()
        .collect::<Vec<_>>()
    {
        let export = graph.alias_instance_export(instance, &name)?;
        graph.export(export, &name)?;
    }
    Ok(graph.encode(EncodeOptions::default())?)
}
