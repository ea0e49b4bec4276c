//! `rill bench` end to end against an in-process broker: each JSON summary
//! counts exactly the messages asked for, and bad flags are usage errors.
//! A smoke run so the tool cannot rot; the figures themselves are judged in
//! docs/BENCHMARKS.md, not here.

use std::process::{Command, Output};

use rill_testkit::Broker;

fn rill(broker: &Broker, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .env("RILL_BROKERS", broker.bootstrap())
        .output()
        .unwrap()
}

/// Runs a bench that must succeed and returns its one JSON object.
fn bench(broker: &Broker, args: &[&str]) -> serde_json::Value {
    let output = rill(broker, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status.code()
    );
    // In a pipe: no progress bar.
    assert_eq!(stderr, "");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn usage_error(output: &Output, sentence: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(sentence), "stderr was: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Percentiles present, counted over `count` samples, and in order.
fn latency_of(summary: &serde_json::Value, key: &str, count: u64) {
    let latency = &summary[key];
    assert_eq!(latency["count"], count, "{summary}");
    let p50 = latency["p50"].as_u64().unwrap();
    let p99 = latency["p99"].as_u64().unwrap();
    let p999 = latency["p999"].as_u64().unwrap();
    let max = latency["max"].as_u64().unwrap();
    assert!(
        0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{summary}"
    );
}

#[test]
fn produce_consume_and_e2e_count_every_message() {
    let broker = Broker::start().unwrap();
    let produced = bench(
        &broker,
        &[
            "bench",
            "produce",
            "-t",
            "smoke",
            "--count",
            "20000",
            "--partitions",
            "2",
            "--producers",
            "2",
            "--json",
        ],
    );
    assert_eq!(produced["mode"], "produce");
    assert_eq!(produced["messages"], 20_000);
    assert_eq!(produced["bytes"], 20_000 * 200);
    assert_eq!(produced["partitions"], 2);
    assert_eq!(produced["settings"]["acks"], "1");
    assert!(produced["msgs_per_sec"].as_f64().unwrap() > 0.0);
    latency_of(&produced, "latency_us", 20_000);

    let consumed = bench(
        &broker,
        &[
            "bench", "consume", "-t", "smoke", "--count", "20000", "--json",
        ],
    );
    assert_eq!(consumed["mode"], "consume");
    assert_eq!(consumed["messages"], 20_000);
    assert_eq!(consumed["bytes"], 20_000 * 200);
    // Without a count: everything the topic holds, and no more.
    let all = bench(&broker, &["bench", "consume", "-t", "smoke", "--json"]);
    assert_eq!(all["messages"], 20_000);
    let grouped = bench(
        &broker,
        &[
            "bench", "consume", "-t", "smoke", "-g", "smokers", "-c", "20000", "--json",
        ],
    );
    assert_eq!(grouped["messages"], 20_000);
    assert_eq!(grouped["settings"]["group"], "smokers");
    // The newest 1,000 of each partition.
    let newest = bench(
        &broker,
        &[
            "bench", "consume", "-t", "smoke", "--last", "1000", "--json",
        ],
    );
    assert_eq!(newest["messages"], 2_000);
    assert_eq!(newest["settings"]["last"], 1_000);
    // One-message batches, several on the wire at once.
    let small = bench(
        &broker,
        &[
            "bench",
            "produce",
            "-t",
            "small",
            "-c",
            "3000",
            "--batch-size",
            "1",
            "--linger-ms",
            "0",
            "--max-in-flight",
            "16",
            "--json",
        ],
    );
    assert_eq!(small["messages"], 3_000);
    assert_eq!(small["settings"]["max_in_flight"], 16);

    let e2e = bench(
        &broker,
        &[
            "bench", "e2e", "-t", "smoke", "--rate", "5000", "--count", "2000", "--acks", "-1",
            "--json",
        ],
    );
    assert_eq!(e2e["mode"], "e2e");
    // Only this run's messages, though the topic holds 20,000 older ones.
    assert_eq!(e2e["messages"], 2_000);
    assert_eq!(e2e["settings"]["acks"], "all");
    latency_of(&e2e, "latency_us", 2_000);
    latency_of(&e2e, "ack_latency_us", 2_000);
    // 2,000 messages at 5,000/s arrive within about a second: each second
    // that had some is listed once, in order, and together they hold all.
    let seconds = e2e["latency_by_second"]
        .as_array()
        .expect("latency by second");
    assert!(!seconds.is_empty());
    let numbers: Vec<u64> = seconds
        .iter()
        .map(|s| s["second"].as_u64().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let total: u64 = seconds.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 2_000);
    for second in seconds {
        assert!(second["p99"].as_u64().unwrap() <= second["max"].as_u64().unwrap());
    }

    // A warm-up's messages are delivered and counted, not measured: at
    // 5,000/s, 200 ms of 2,000 messages are about 1,000.
    let warm = bench(
        &broker,
        &[
            "bench", "e2e", "-t", "smoke", "--rate", "5000", "--count", "2000", "--warmup",
            "200ms", "--json",
        ],
    );
    assert_eq!(warm["messages"], 2_000);
    assert_eq!(warm["settings"]["warmup_s"], 0.2);
    for key in ["latency_us", "ack_latency_us"] {
        let measured = warm[key]["count"].as_u64().unwrap();
        assert!((500..=1_500).contains(&measured), "{key}: {warm}");
    }

    // The table, for people.
    let table = rill(&broker, &["bench", "produce", "-t", "smoke", "-c", "10"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("msgs/s"), "{table}");
    assert!(table.contains("send → ack: p50"), "{table}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let broker = Broker::start().unwrap();
    broker.create_topic("two", 2).unwrap();
    usage_error(
        &rill(&broker, &["bench", "produce", "--acks", "2"]),
        "acks must be 0, 1 or all",
    );
    usage_error(
        &rill(&broker, &["bench", "produce", "--compression", "brotli"]),
        "unknown codec `brotli`",
    );
    usage_error(
        &rill(&broker, &["bench", "produce", "--duration", "soon"]),
        "not a duration",
    );
    usage_error(
        &rill(&broker, &["bench", "produce", "--max-in-flight", "17"]),
        "--max-in-flight must be between 1 and 16",
    );
    usage_error(
        &rill(&broker, &["bench", "produce", "--rate", "-1"]),
        "not a rate",
    );
    usage_error(
        &rill(&broker, &["bench", "produce", "--producers", "0"]),
        "--producers must be between 1 and 1024",
    );
    usage_error(
        &rill(
            &broker,
            &["bench", "produce", "-t", "two", "--partitions", "3"],
        ),
        "topic 'two' exists with 2 partition(s), not 3",
    );
    usage_error(
        &rill(&broker, &["bench", "e2e", "--rate", "0"]),
        "e2e needs a --rate above 0",
    );
    usage_error(
        &rill(&broker, &["bench", "e2e", "--size", "8"]),
        "at least 16 bytes",
    );
    usage_error(
        &rill(
            &broker,
            &["bench", "consume", "-t", "two", "--partition", "5"],
        ),
        "topic 'two' has no partition 5",
    );
    let empty = rill(&broker, &["bench", "consume", "-t", "two"]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("topic 'two' is empty"));
}
