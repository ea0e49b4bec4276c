"""The report of bench/paper/run.sh: tables and a chart from results.jsonl.

Prints the Markdown; with --docs, also puts it into docs/BENCHMARKS.md
between the "paper:begin" and "paper:end" markers; with --chart, writes an
SVG bar chart (drawn by hand: no plotting library to install).
"""

import argparse
import json
import math
import sys
from pathlib import Path

SIZE = 200
BEGIN = "<!-- paper:begin (written by bench/paper/run.sh) -->"
END = "<!-- paper:end -->"

# The paper's figures (Kreps, Narkhede, Rao, NetDB 2011, §5).
PAPER = {"produce-b1": 50_000, "produce-b50": 400_000, "consume": 22_000}
PAPER_STORAGE = {"Kafka": 9, "ActiveMQ": 144}

# The targets: msg/s floor, and the factor over each peer.
TARGETS = {
    "produce-b1": (200_000, None),
    "produce-b50": (1_000_000, 10),
    "consume": (2_000_000, 10),
}
TESTS = {
    "produce-b1": "producer, batch 1",
    "produce-b50": "producer, batch 50",
    "consume": "consumer, prefetch 1,000 msgs / 200 KB",
}
PEERS = {"rabbitmq": "RabbitMQ", "activemq": "ActiveMQ"}
SYSTEMS = {"rill": "Rill", **PEERS}

# Record-batch v2: a 61-byte batch header, and per record with a 200-byte
# value, no key, no headers: length (2 bytes), attributes, timestamp delta,
# offset delta, key length (-1), value length (2), header count: 9 bytes when
# the deltas fit one varint byte (offset delta < 64).
BATCH_HEADER = 61
RECORD_OVERHEAD = 9


def load(path):
    results = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        results[(row["system"], row["test"])] = row["result"]
    return results


def rate(value):
    return f"{value:,.0f}"


def figure(results, system, test, messages):
    """Msg/s and a note when the run stopped before the full count."""
    result = results.get((system, test))
    if result is None:
        return None, "not run"
    if "error" in result:
        return None, "failed"
    msgs = result.get("messages", 0)
    note = ""
    if result.get("capped") or msgs < messages:
        note = f" ({msgs / 1e6:.2f} M msgs)"
    return result["msgs_per_sec"], note


def throughput_table(results, messages):
    lines = [
        (
            "| test | paper: Kafka (2011) | Rill | RabbitMQ | ActiveMQ | Rill ÷ RabbitMQ "
            "| Rill ÷ ActiveMQ | target | met? |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for test, label in TESTS.items():
        values = {s: figure(results, s, test, messages) for s in SYSTEMS}
        cells = [
            note if v is None else f"{rate(v)}{note}" for v, note in values.values()
        ]
        rill = values["rill"][0]
        ratios = []
        for peer in PEERS:
            peer_rate = values[peer][0]
            ratios.append(f"{rill / peer_rate:,.1f}×" if rill and peer_rate else "—")
        floor, factor = TARGETS[test]
        target = f"≥ {rate(floor)}" + (f", ≥ {factor}× peers" if factor else "")
        met = rill is not None and rill >= floor
        if factor:
            for peer in PEERS:
                peer_rate = values[peer][0]
                met = met and peer_rate is not None and rill >= factor * peer_rate
        row = [
            label,
            rate(PAPER[test]),
            *cells,
            *ratios,
            target,
            "yes" if met else "no",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def storage_table(results):
    lines = [
        "| system | bytes stored per 200-byte message | overhead | how measured |",
        "| --- | ---: | ---: | --- |",
    ]
    for test, batch in (("storage-b1", 1), ("storage-b50", 50)):
        stored = results.get(("rill", test))
        count = results.get(("rill", f"produce-{test[8:]}"), {}).get("messages")
        if stored is None or not count:
            continue
        per = stored["bytes"] / count
        minimum = SIZE + RECORD_OVERHEAD + BATCH_HEADER / batch
        lines.append(
            f"| Rill, batch {batch} | {per:,.2f} | {per - SIZE:,.2f} | "
            f"size of the partition's .log files ÷ messages; the record-batch v2 "
            f"minimum is {minimum:,.2f} |"
        )
    for system, name in PEERS.items():
        stored = results.get((system, "storage"))
        if not stored or not stored.get("messages"):
            continue
        per = stored["bytes"] / stored["messages"]
        where = (
            "mnesia directory" if system == "rabbitmq" else "data directory (KahaDB)"
        )
        lines.append(
            f"| {name} | {per:,.0f} | {per - SIZE:,.0f} | growth of the {where}, "
            f"allocated blocks (`du -B1`), after {stored['messages']:,} persistent messages |"
        )
    for name, overhead in PAPER_STORAGE.items():
        lines.append(
            f"| paper: {name} | {SIZE + overhead} | {overhead} | the paper, §5 |"
        )
    return lines


def limits_table(results):
    """The limits, and each Rill figure as a fraction of the one bounding it."""
    limit = {
        test: results[("machine", test)]["mb_per_sec"]
        for test in ("disk-write", "disk-write-fdatasync", "tcp-loopback", "cache-read")
        if ("machine", test) in results
    }
    lines = [
        "| limit | MB/s | as 200-byte msg/s |",
        "| --- | ---: | ---: |",
    ]
    names = {
        "disk-write": "sequential write(2) to a file, page cache (no fsync)",
        "disk-write-fdatasync": "sequential write(2) + one fdatasync at the end (the disk)",
        "tcp-loopback": "loopback TCP, one connection",
        "cache-read": "read(2) of a file in the page cache",
    }
    for test, mb in limit.items():
        lines.append(f"| {names[test]} | {mb:,.0f} | {rate(mb * 1e6 / SIZE)} |")
    lines += [
        "",
        "| Rill figure | MB/s (wire, stored bytes) | bound | fraction of it |",
        "| --- | ---: | --- | ---: |",
    ]
    bounds = {
        "produce-b1": ("disk-write", "tcp-loopback"),
        "produce-b50": ("disk-write", "tcp-loopback"),
        "consume": ("cache-read", "tcp-loopback"),
    }
    for test, candidates in bounds.items():
        result = results.get(("rill", test))
        stored = results.get(
            ("rill", "storage-b1" if test == "produce-b1" else "storage-b50")
        )
        count = results.get(
            ("rill", "produce-b1" if test == "produce-b1" else "produce-b50")
        )
        if not result or not stored or not count:
            continue
        per = stored["bytes"] / count["messages"]
        mb = result["msgs_per_sec"] * per / 1e6
        present = [c for c in candidates if c in limit]
        if not present:
            continue
        bound = min(present, key=lambda c: limit[c])
        others = ", ".join(f"{mb / limit[c]:.2f} of {c}" for c in present if c != bound)
        lines.append(
            f"| {TESTS[test]} | {mb:,.0f} | {bound} ({limit[bound]:,.0f} MB/s) | "
            f"{mb / limit[bound]:.2f}" + (f" ({others})" if others else "") + " |"
        )
    return lines


def sink_table(results):
    lines = [
        (
            "| load generator | producer, batch 1 | producer, batch 50 | consumer "
            "| its broker's best ÷ its ceiling |"
        ),
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for proto, peer in (("amqp", "rabbitmq"), ("stomp", "activemq")):
        row = [f"{proto.upper()} ({PEERS[peer]}) against a fake broker"]
        worst = 0.0
        for test in TESTS:
            sink = results.get((f"{proto}-sink", test))
            real = results.get((peer, test))
            row.append(rate(sink["msgs_per_sec"]) if sink else "—")
            if sink and real and "msgs_per_sec" in real:
                worst = max(worst, real["msgs_per_sec"] / sink["msgs_per_sec"])
        row.append(f"{worst:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def chart(results, path):
    """Grouped horizontal bars, msg/s on a log scale."""
    series = [
        ("paper: Kafka", "#999999"),
        ("Rill", "#1f77b4"),
        ("RabbitMQ", "#ff7f0e"),
        ("ActiveMQ", "#2ca02c"),
    ]
    left, width, bar, gap = 220, 520, 14, 18
    low, high = 3, 7  # 10^3 .. 10^7 msg/s

    def x(value):
        clamped = min(max(value, 10**low), 10**high)
        return left + (math.log10(clamped) - low) / (high - low) * width

    rows = []
    y = 40
    for test, label in TESTS.items():
        values = [PAPER[test]] + [
            results.get((s, test), {}).get("msgs_per_sec") for s in SYSTEMS
        ]
        rows.append(f'<text x="10" y="{y + bar - 4}" font-weight="bold">{label}</text>')
        y += bar + 4
        for (name, color), value in zip(series, values):
            if value:
                rows.append(
                    f'<rect x="{left}" y="{y}" width="{x(value) - left:.1f}" height="{bar - 2}" '
                    f'fill="{color}"/>'
                    f'<text x="{x(value) + 4:.1f}" y="{y + bar - 4}">{name} {rate(value)}</text>'
                )
            y += bar
        y += gap
    height = y + 30
    ticks = []
    for power in range(low, high + 1):
        tx = x(10**power)
        ticks.append(
            f'<line x1="{tx:.1f}" y1="30" x2="{tx:.1f}" y2="{y}" stroke="#dddddd"/>'
            f'<text x="{tx:.1f}" y="{y + 16}" text-anchor="middle">10^{power}</text>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 200}" height="{height}" '
        f'font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<text x="10" y="18" font-size="14">The paper\'s experiment: messages per second '
        f"(log scale), this machine vs the paper's Kafka</text>"
        + "".join(ticks)
        + "".join(rows)
        + "</svg>\n"
    )
    Path(path).write_text(svg)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--peer-seconds", type=float, required=True)
    parser.add_argument("--chart")
    parser.add_argument("--docs")
    args = parser.parse_args()
    results = load(args.results)
    info = results.get(("machine", "info"), {})
    lines = [
        BEGIN,
        "",
        (
            f"Run on {info.get('date', '?')} (commit {info.get('commit', '?')}, "
            f"{info.get('cores', '?')} cores, load average at the start "
            f"{info.get('load', '?')}); {args.messages:,} messages per test, each run "
            f"stopped after {args.peer_seconds:g} s if not done (the message count "
            "is then given)."
        ),
        "",
        *throughput_table(results, args.messages),
        "",
        *storage_table(results),
        "",
        *limits_table(results),
        "",
        *sink_table(results),
    ]
    rss = results.get(("rill", "rss"))
    if rss:
        lines += [
            "",
            f"Rill's peak RSS over its runs: {rss['bytes'] / 2**20:,.0f} MiB.",
        ]
    if args.chart:
        chart(results, args.chart)
        lines += ["", "![the paper's experiment, msg/s](../bench/paper/chart.svg)"]
    lines += ["", END]
    text = "\n".join(lines)
    print(text)
    if args.docs:
        docs = Path(args.docs)
        current = docs.read_text()
        if BEGIN not in current or END not in current:
            sys.exit(f"report.py: {docs} has no '{BEGIN}' ... '{END}' markers")
        head, rest = current.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        docs.write_text(head + text + tail)


if __name__ == "__main__":
    main()
