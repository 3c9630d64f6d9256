//! Core wasm module → component (wasi preview1 reactor adapter), then validation.

use std::path::Path;

use wasi_preview1_component_adapter_provider as adapter;
use wasmparser::{Parser, Payload};

use crate::Result;

pub fn componentize(core_path: &Path, out_path: &Path) -> Result<Vec<u8>> {
    let core = std::fs::read(core_path).map_err(|e| format!("reading {}: {e}", core_path.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .map_err(|e| format!("{}: {e:#}", core_path.display()))?
        .validate(true)
        .adapter(adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .map_err(|e| format!("adapter: {e:#}"))?
        .encode()
        .map_err(|e| format!("componentizing {}: {e:#}", core_path.display()))?;
    check(&component).map_err(|e| format!("{}: {e}", out_path.display()))?;
    crate::paths::write_if_changed(out_path, &component)?;
    Ok(component)
}

/// A process component must validate, export `init` and import the platform interface.
pub fn check(component: &[u8]) -> Result<()> {
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(component)
        .map_err(|e| format!("invalid component: {e}"))?;
    let mut exports_init = false;
    let mut imports_platform = false;
    // Only the outermost component's imports and exports matter.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.map_err(|e| format!("unreadable component: {e}"))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    if import?.name.0.starts_with("hyperware:process/standard@") {
                        imports_platform = true;
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    if export?.name.0 == "init" {
                        exports_init = true;
                    }
                }
            }
            _ => {}
        }
    }
    if !exports_init {
        return Err("the component does not export `init`".into());
    }
    if !imports_platform {
        return Err("the component does not import hyperware:process/standard".into());
    }
    Ok(())
}
