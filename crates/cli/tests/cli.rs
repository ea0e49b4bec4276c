//! The `rill` binary end to end against an in-process broker: output and
//! exit codes, including the error paths.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use rill_testkit::Broker;

fn rill(broker: &Broker, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .env("RILL_BROKERS", broker.bootstrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    // In a pipe: no progress bar, no chatter.
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn fails(output: &Output, code: i32, sentence: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(sentence), "stderr was: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr}");
}

#[test]
fn topic_commands_and_their_errors() {
    let broker = Broker::start().unwrap();
    let created = ok(&rill(
        &broker,
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ],
        b"",
    ));
    assert_eq!(created, "created topic 't' with 3 partition(s)\n");
    fails(
        &rill(&broker, &["topic", "create", "t"], b""),
        5,
        "topic 't' already exists",
    );
    let list = ok(&rill(&broker, &["topic", "list"], b""));
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["t", "3", "1"])
    );
    let described = ok(&rill(&broker, &["topic", "describe", "t"], b""));
    assert!(described.contains("PARTITIONS  3"), "{described}");
    assert!(described.contains("retention.ms=60000"), "{described}");
    ok(&rill(
        &broker,
        &[
            "topic",
            "alter",
            "t",
            "--set",
            "retention.ms=1000",
            "--partitions",
            "4",
        ],
        b"",
    ));
    let described = ok(&rill(&broker, &["topic", "describe", "t"], b""));
    assert!(described.contains("PARTITIONS  4"), "{described}");
    assert!(described.contains("retention.ms=1000"), "{described}");
    fails(
        &rill(&broker, &["topic", "alter", "t"], b""),
        2,
        "nothing to change",
    );
    fails(
        &rill(&broker, &["topic", "describe", "missing"], b""),
        3,
        "topic 'missing' does not exist; create it with `rill topic create missing`",
    );
    ok(&rill(&broker, &["topic", "delete", "t"], b""));
    fails(
        &rill(&broker, &["topic", "delete", "t"], b""),
        3,
        "topic 't' does not exist",
    );
    let info = ok(&rill(&broker, &["cluster", "info"], b""));
    assert!(info.contains("(controller)"), "{info}");
    assert!(info.contains(&broker.bootstrap()), "{info}");
}

#[test]
fn produce_then_consume_in_every_format() {
    let broker = Broker::start().unwrap();
    broker.create_topic("p", 1).unwrap();
    ok(&rill(
        &broker,
        &["produce", "p", "-K", ":", "-H", "source=cli", "-z", "zstd"],
        b"k1:v1\nk2:v2\nno-key\n",
    ));
    let plain = ok(&rill(&broker, &["consume", "p", "-e"], b""));
    assert_eq!(plain, "v1\nv2\nno-key\n");
    let kv = ok(&rill(
        &broker,
        &["consume", "p", "-c", "2", "-f", "kv"],
        b"",
    ));
    assert_eq!(kv, "k1\tv1\nk2\tv2\n");
    let json = ok(&rill(
        &broker,
        &["consume", "p", "-o", "1", "-c", "1", "-f", "json"],
        b"",
    ));
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(value["key"], "k2");
    assert_eq!(value["value"], "v2");
    assert_eq!(value["offset"], 1);
    assert_eq!(value["partition"], 0);
    assert_eq!(value["headers"][0]["key"], "source");
    assert_eq!(value["headers"][0]["value"], "cli");
    let end = ok(&rill(&broker, &["consume", "p", "-o", "end", "-e"], b""));
    assert_eq!(end, "");
    let future = ok(&rill(
        &broker,
        &["consume", "p", "-o", "@99999999999999", "-e"],
        b"",
    ));
    assert_eq!(future, "");

    fails(
        &rill(&broker, &["produce", "missing"], b"x\n"),
        3,
        "topic 'missing' does not exist",
    );
    fails(
        &rill(&broker, &["consume", "missing"], b""),
        3,
        "topic 'missing' does not exist",
    );
    fails(
        &rill(&broker, &["produce", "p", "-p", "7"], b"x\n"),
        2,
        "topic 'p' has no partition 7",
    );
    let bad_offset = rill(&broker, &["consume", "p", "-o", "yesterday"], b"");
    assert_eq!(bad_offset.status.code(), Some(2));
    let unreachable = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["topic", "list", "-b", "127.0.0.1:1"])
        .output()
        .unwrap();
    fails(&unreachable, 4, "cannot reach a broker at 127.0.0.1:1");
}

#[test]
fn group_commands_show_lag_reset_and_delete() {
    let broker = Broker::start().unwrap();
    broker.create_topic("g", 2).unwrap();
    ok(&rill(
        &broker,
        &["produce", "g", "-K", ":"],
        b"a:1\nb:2\nc:3\nd:4\n",
    ));
    let consumed = ok(&rill(
        &broker,
        &["consume", "g", "-g", "readers", "-c", "4"],
        b"",
    ));
    assert_eq!(consumed.lines().count(), 4);

    let list = ok(&rill(&broker, &["group", "list"], b""));
    assert!(list.lines().any(|l| l.starts_with("readers")), "{list}");
    let described = ok(&rill(&broker, &["group", "describe", "readers"], b""));
    let rows: Vec<Vec<&str>> = described
        .lines()
        .skip_while(|l| !l.starts_with("TOPIC"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{described}");
    for row in &rows {
        // Everything consumed and committed: lag 0.
        assert_eq!(row[2], row[3], "{described}");
        assert_eq!(row[4], "0", "{described}");
    }

    ok(&rill(
        &broker,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "g",
            "--to",
            "beginning",
        ],
        b"",
    ));
    let again = ok(&rill(
        &broker,
        &["consume", "g", "-g", "readers", "-c", "4"],
        b"",
    ));
    assert_eq!(again.lines().count(), 4);

    ok(&rill(&broker, &["group", "delete", "readers"], b""));
    fails(
        &rill(&broker, &["group", "describe", "readers"], b""),
        3,
        "group 'readers' does not exist",
    );
}

#[test]
fn a_group_can_consume_with_the_kip848_protocol() {
    let broker = Broker::start().unwrap();
    broker.create_topic("n", 2).unwrap();
    ok(&rill(
        &broker,
        &["produce", "n", "-K", ":"],
        b"a:1\nb:2\nc:3\nd:4\n",
    ));
    let args = [
        "consume",
        "n",
        "-g",
        "new-readers",
        "--group-protocol",
        "consumer",
        "-c",
        "4",
    ];
    let consumed = ok(&rill(&broker, &args, b""));
    let mut values: Vec<&str> = consumed.lines().collect();
    values.sort();
    assert_eq!(values, ["1", "2", "3", "4"]);
    // The offsets were committed under the member epoch: lag 0.
    let described = ok(&rill(&broker, &["group", "describe", "new-readers"], b""));
    let lags: Vec<&str> = described
        .lines()
        .skip_while(|l| !l.starts_with("TOPIC"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    assert_eq!(lags, ["0", "0"], "{described}");
    fails(
        &rill(
            &broker,
            &["consume", "n", "--group-protocol", "consumer"],
            b"",
        ),
        2,
        "--group",
    );
}
