//! The checked-in generated code must be what the generator makes from the
//! specs today; run `cargo xtask codegen` to refresh it.

use std::path::Path;

#[test]
fn checked_in_code_matches_the_specs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let specs = root.join("../shared/kafka-message-specs");
    if !specs.is_dir() {
        println!(
            "note: {} is absent; the generated code was not checked",
            specs.display()
        );
        return;
    }
    let files = rill_codegen::generate(&specs).expect("generate");
    assert!(files.len() > 180, "only {} files generated", files.len());
    let stale = rill_codegen::differences(&root.join("crates/protocol"), &files);
    assert!(
        stale.is_empty(),
        "generated code is out of date in {stale:?}; run `cargo xtask codegen`"
    );
}
