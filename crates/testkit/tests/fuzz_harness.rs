//! The fuzz harness answers the captured client frames (the fuzz target's
//! seeds), one by one and as a pipelined run with a restart in it, so the
//! harness keeps working between fuzzing runs, which need nightly features.

use std::path::Path;

use rill_testkit::fuzz::Harness;

/// The seeds that are one request frame each (not `RUN\0` inputs).
fn seed_frames() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/broker");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    let frames: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .filter(|frame| !frame.starts_with(b"RUN\0"))
        .collect();
    assert!(frames.len() > 10, "the seeds are missing");
    frames
}

#[test]
fn the_seed_frames_are_answered_alone_and_as_a_run_across_a_restart() {
    let frames = seed_frames();
    let mut harness = Harness::new();
    for frame in &frames {
        harness.feed(frame);
    }
    let mut run: Vec<Option<&[u8]>> = frames.iter().map(|f| Some(f.as_slice())).collect();
    run.insert(run.len() / 2, None);
    harness.feed_run(&run);
}
