//! The paper's sample producer and consumer (examples/) run as written,
//! each against its own embedded broker. `cargo test` and nextest build the
//! examples beside the test binaries; this runs them.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps, examples beside deps.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples (cargo test builds them)",
        path.display()
    );
    path
}

#[test]
fn paper_producer_runs_as_written() {
    let output = Command::new(example("paper_producer")).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"sent one message set to topic1\n");
}

#[test]
fn paper_consumer_runs_as_written() {
    let output = Command::new(example("paper_consumer")).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"first\nsecond\nthird\n");
}
