//! Project chores: `cargo xtask codegen` regenerates the Kafka codec from
//! `../shared/kafka-message-specs` (or the folder given as its argument).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("codegen") => {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let specs = args
                .next()
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared/kafka-message-specs"));
            let protocol = root.join("crates/protocol");
            match rill_codegen::generate(&specs).and_then(|files| {
                rill_codegen::write(&protocol, &files)?;
                Ok(files.len())
            }) {
                Ok(count) => {
                    println!("wrote {count} files under {}", protocol.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("codegen failed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: cargo xtask codegen [SPEC_DIR]");
            ExitCode::from(2)
        }
    }
}
