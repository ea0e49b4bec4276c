//! rill-codegen: turns Kafka's JSON message specs into Rill's protocol code.
//!
//! - `spec`: parses the specs (JSON with `//` comments) into a model.
//! - `emit`: one Rust module per spec file (structs, encode, size, decode).
//! - `api`: the API table (`ApiKey`, `RequestBody`, `ResponseBody`).
//! - `random`: random-value builders for the protocol's round-trip test.
//!
//! `generate` returns every file as text; `write` puts them in the protocol
//! crate. Output goes through `rustfmt`, so it is stable and formatted.

mod api;
mod emit;
mod names;
mod random;
mod spec;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A generated file: its path relative to the protocol crate, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub text: String,
}

/// The directory, relative to the protocol crate, that holds one generated
/// module per spec file and nothing else.
pub const MESSAGES_DIR: &str = "src/messages";

/// Reads every `*.json` spec in `spec_dir`, sorted by name.
fn read_specs(spec_dir: &Path) -> Result<Vec<spec::Spec>, String> {
    let entries =
        fs::read_dir(spec_dir).map_err(|e| format!("reading {}: {e}", spec_dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .ok_or_else(|| format!("bad file name {}", path.display()))?;
            let source =
                fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            spec::parse_spec(stem, &source)
        })
        .collect()
}

fn rustfmt(path: &Path, text: &str) -> Result<String, String> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running rustfmt: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("rustfmt has no stdin")?;
    let input = text.to_owned();
    // Written from a thread so a large file cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("running rustfmt: {e}"))?;
    writer
        .join()
        .map_err(|_| "rustfmt writer panicked".to_owned())?
        .map_err(|e| format!("writing to rustfmt: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

/// Generates every file from the specs in `spec_dir`.
pub fn generate(spec_dir: &Path) -> Result<Vec<GeneratedFile>, String> {
    let specs = read_specs(spec_dir)?;
    let mut raw = Vec::new();
    for spec in &specs {
        let emitter = emit::FileEmitter::new(spec);
        let path = Path::new(MESSAGES_DIR).join(format!("{}.rs", emitter.module_name()));
        raw.push((path, emitter.emit_module()?));
    }
    raw.push((
        Path::new(MESSAGES_DIR).join("mod.rs"),
        api::emit_messages_mod(&specs),
    ));
    let apis = api::pair_apis(&specs)?;
    raw.push((PathBuf::from("src/api.rs"), api::emit_api(&apis)?));
    raw.push((
        PathBuf::from("tests/random_values/mod.rs"),
        random::emit_random(&specs)?,
    ));
    raw.into_iter()
        .map(|(path, text)| {
            let text = rustfmt(&path, &text)?;
            Ok(GeneratedFile { path, text })
        })
        .collect()
}

/// Differences between generated files and those under `protocol_dir`:
/// files that differ or are missing, and stale files in the messages folder.
pub fn differences(protocol_dir: &Path, files: &[GeneratedFile]) -> Vec<PathBuf> {
    let mut differ: Vec<PathBuf> = files
        .iter()
        .filter(|file| {
            fs::read_to_string(protocol_dir.join(&file.path))
                .ok()
                .as_deref()
                != Some(file.text.as_str())
        })
        .map(|file| file.path.clone())
        .collect();
    differ.extend(stale_files(protocol_dir, files));
    differ
}

fn stale_files(protocol_dir: &Path, files: &[GeneratedFile]) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(protocol_dir.join(MESSAGES_DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .map(|entry| Path::new(MESSAGES_DIR).join(entry.file_name()))
        .filter(|path| files.iter().all(|file| &file.path != path))
        .collect()
}

/// Writes the generated files under `protocol_dir` and removes stale ones.
pub fn write(protocol_dir: &Path, files: &[GeneratedFile]) -> Result<(), String> {
    for stale in stale_files(protocol_dir, files) {
        fs::remove_file(protocol_dir.join(&stale))
            .map_err(|e| format!("removing {}: {e}", stale.display()))?;
    }
    for file in files {
        let path = protocol_dir.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        if fs::read_to_string(&path).ok().as_deref() != Some(file.text.as_str()) {
            fs::write(&path, &file.text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
    }
    Ok(())
}
