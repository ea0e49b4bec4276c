//! `rill serve` against a data directory: it remembers its node id
//! (meta.properties) and refuses to start under another.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn serve(data_dir: &Path, node_id: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rill"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--node-id", node_id, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts the broker and waits for its "listening" line, then stops it.
fn serve_and_stop(data_dir: &Path, node_id: &str) {
    let mut child: Child = serve(data_dir, node_id).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        line.starts_with("rill: listening"),
        "stdout: {line}, stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_data_directory_refuses_another_node_id() {
    let root = std::env::temp_dir().join(format!("rill-serve-test-{}", std::process::id()));
    let data_dir = root.join("d1");
    serve_and_stop(&data_dir, "1");
    let properties = std::fs::read_to_string(data_dir.join("meta.properties")).unwrap();
    assert!(properties.contains("node.id=1\n"), "{properties}");

    let refused: Output = serve(&data_dir, "2").output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let sentence = format!(
        "rill: data directory {} belongs to node 1, but this node is configured as node 2 \
         (node_id); start it with --node-id 1, or with an empty data directory",
        data_dir.display()
    );
    assert_eq!(stderr.lines().last(), Some(sentence.as_str()), "{stderr}");

    serve_and_stop(&data_dir, "1");
    std::fs::remove_dir_all(&root).unwrap();
}
