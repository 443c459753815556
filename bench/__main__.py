"""Benchmark our chat server side by side with ncat's chat mode.

    python -m bench              the full run (about seven minutes), table and plot
    python -m bench --smoke      a few seconds with small numbers, to check it works
    python -m bench --only ours  skip ncat

Each scenario runs ``--repeat`` times against a fresh server process and the
median of each figure is reported. Results go to bench/results/.
"""

import argparse
import json
import math
import platform
import resource
import statistics
import sys
from pathlib import Path

from bench.loadgen import LoadGenerator, Scenario
from bench.servers import Ncat, OurServer, ensure_ncat

RESULTS = Path(__file__).resolve().parent / "results"

FULL = [
    Scenario("small-room", "10 clients, all sending at full speed", clients=10, senders=10, window=16, payload_bytes=64, duration_s=5),
    Scenario("fan-out-200", "200 clients, 2 senders at full speed", clients=200, senders=2, window=16, payload_bytes=64, duration_s=5),
    Scenario("steady-100", "100 clients, each sending 2 lines/s", clients=100, senders=100, window=8, payload_bytes=4000, duration_s=8, rate_hz=2),
    Scenario("steady-100-deaf", "the same, plus 1 client that never reads", clients=101, senders=100, window=8, payload_bytes=4000, duration_s=8, rate_hz=2, non_readers=1),
    Scenario("connect-1000", "1000 clients connect at once, 1 sender at 20 lines/s", clients=1000, senders=1, window=8, payload_bytes=64, duration_s=3, rate_hz=20, connect_storm=True),
]

SMOKE = [
    Scenario("small-room", "5 clients, all at full speed", clients=5, senders=5, window=8, payload_bytes=64, duration_s=0.5),
    Scenario("fan-out-200", "20 clients, 2 senders", clients=20, senders=2, window=8, payload_bytes=64, duration_s=0.5),
    Scenario("steady-100", "10 clients at 5 lines/s", clients=10, senders=10, window=4, payload_bytes=1000, duration_s=0.5, rate_hz=5),
    Scenario("steady-100-deaf", "the same plus 1 non-reader", clients=11, senders=10, window=4, payload_bytes=1000, duration_s=0.5, rate_hz=5, non_readers=1),
    Scenario("connect-1000", "50 clients connect at once", clients=50, senders=1, window=4, payload_bytes=64, duration_s=0.5, rate_hz=20, connect_storm=True),
]

# (key, heading, format, better) for each figure in the table; better is "high" or "low".
FIGURES = [
    ("deliveries_per_s", "deliveries/s", "{:,.0f}", "high"),
    ("p50_ms", "latency p50 ms", "{:.2f}", "low"),
    ("p90_ms", "latency p90 ms", "{:.2f}", "low"),
    ("p99_ms", "latency p99 ms", "{:.2f}", "low"),
    ("max_ms", "latency max ms", "{:.1f}", "low"),
    ("cpu_ms_per_1000", "server CPU ms / 1000 deliveries", "{:.1f}", "low"),
    ("rss_mb", "server peak RSS MB", "{:.1f}", "low"),
    ("accepted_s", "all accepted (first line), s", "{:.3f}", "low"),
    ("connect_s", "all in the chat, s", "{:.3f}", "low"),
    ("not_joined", "clients never in the chat", "{:.0f}", "low"),
    ("lost", "lost lines", "{:.0f}", "low"),
    ("duplicated", "duplicated", "{:.0f}", "low"),
    ("reordered", "reordered", "{:.0f}", "low"),
    ("one_order", "one order for all (1 = yes)", "{:.0f}", "high"),
    ("non_readers_dropped", "non-readers disconnected", "{:.0f}", "high"),
]


def measure(server_class, scenario: Scenario, log_path: Path) -> dict:
    server = server_class(log_path)
    try:
        outcome = LoadGenerator(server.address, scenario, server.join_line, server.cpu_seconds).run()
        rss = server.peak_rss_mb()
    except (OSError, TimeoutError) as error:
        print(f"    failed: {error}", file=sys.stderr)
        failed = {key: float("nan") for key, *_ in FIGURES}
        failed["not_joined"] = getattr(error, "missing", float("nan"))
        return failed
    finally:
        server.stop()
    deliveries_total = len(outcome.latencies_ns)
    return {
        "deliveries_per_s": outcome.deliveries_per_s,
        "p50_ms": outcome.latency_ms(50),
        "p90_ms": outcome.latency_ms(90),
        "p99_ms": outcome.latency_ms(99),
        "max_ms": outcome.latency_ms(100),
        "cpu_ms_per_1000": 1e6 * outcome.cpu_s / deliveries_total if deliveries_total else float("nan"),
        "rss_mb": rss,
        "accepted_s": outcome.accepted_s,
        "connect_s": outcome.connect_s,
        "not_joined": 0,
        "lost": outcome.lost,
        "duplicated": outcome.duplicated,
        "reordered": outcome.reordered,
        "one_order": int(outcome.same_order),
        "non_readers_dropped": outcome.non_readers_dropped,
    }


def median_of(runs: "list[dict]") -> dict:
    """The median of each figure over the runs that completed (NaN if none did)."""
    completed = [run for run in runs if not math.isnan(run["deliveries_per_s"])]
    if not completed:
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {key: statistics.median(run[key] for run in completed) for key in completed[0]}


def ratio(ours: float, theirs: float) -> str:
    if theirs == 0 or math.isnan(theirs) or math.isnan(ours):
        return "-"
    return f"{ours / theirs:.2f}×"


def print_table(scenarios, results: dict, labels) -> str:
    lines = []
    for scenario in scenarios:
        lines.append(f"\n{scenario.name}: {scenario.title}")
        header = f"  {'figure':<34}" + "".join(f"{label:>14}" for label in labels)
        if len(labels) == 2:
            header += f"{'ours/ncat':>12}"
        lines.append(header)
        for key, heading, fmt, _ in FIGURES:
            values = [results[label][scenario.name][key] for label in labels]
            row = f"  {heading:<34}" + "".join(f"{fmt.format(v):>14}" for v in values)
            if len(labels) == 2:
                row += f"{ratio(*values):>12}"
            lines.append(row)
    text = "\n".join(lines)
    print(text)
    return text


def plot(scenarios, results: dict, labels, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install -r bench/requirements.txt)", file=sys.stderr)
        return
    percentiles = [("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")]
    figure, axes = plt.subplots(1, len(scenarios), figsize=(3.2 * len(scenarios), 4), sharey=True, squeeze=False)
    axes = axes[0]
    colors = {"ours": "#2a7ab0", "ncat": "#c8553d"}
    width = 0.38
    for axis, scenario in zip(axes, scenarios):
        for offset, label in enumerate(labels):
            values = [results[label][scenario.name][key] for key, _ in percentiles]
            positions = [i + (offset - (len(labels) - 1) / 2) * width for i in range(len(percentiles))]
            axis.bar(positions, values, width, label=label, color=colors.get(label))
        for label in labels:
            if math.isnan(results[label][scenario.name]["p50_ms"]):
                axis.text(0.5, 0.5, f"{label}: did not finish", transform=axis.transAxes, ha="center", fontsize=9)
        axis.set_title(scenario.name, fontsize=10)
        axis.set_xticks(range(len(percentiles)), [name for _, name in percentiles])
        axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("latency, ms (log scale)")
    axes[0].legend()
    figure.suptitle("End-to-end latency: our server beside ncat --chat (lower is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the chat server beside ncat --chat.")
    parser.add_argument("--smoke", action="store_true", help="a quick run with small numbers")
    parser.add_argument("--repeat", type=int, default=None, help="runs per scenario (default: 3, smoke: 1)")
    parser.add_argument("--only", choices=["ours", "ncat"], help="benchmark one server")
    parser.add_argument("--scenario", action="append", help="run only the named scenario(s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for the table, JSON and plot")
    args = parser.parse_args(argv)

    # 1000 clients need 1000 descriptors here and as many in the server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    scenarios = SMOKE if args.smoke else FULL
    if args.scenario:
        scenarios = [s for s in scenarios if s.name in args.scenario]
    repeat = args.repeat or (1 if args.smoke else 3)
    servers = {"ours": OurServer, "ncat": Ncat}
    if args.only:
        servers = {args.only: servers[args.only]}
    if "ncat" in servers and not ensure_ncat():
        print("ncat is not available: benchmarking our server alone.", file=sys.stderr)
        del servers["ncat"]
    args.output.mkdir(parents=True, exist_ok=True)

    results = {label: {} for label in servers}
    for scenario in scenarios:
        for label, server_class in servers.items():
            runs = []
            for attempt in range(repeat):
                print(f"  {scenario.name} / {label} / run {attempt + 1} of {repeat}...", file=sys.stderr, flush=True)
                runs.append(measure(server_class, scenario, args.output / f"{label}-server.log"))
            results[label][scenario.name] = median_of(runs)

    labels = list(servers)
    machine = f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    print(f"\nMedian of {repeat} run(s) per figure. Machine: {machine}")
    table = print_table(scenarios, results, labels)
    (args.output / "table.txt").write_text(f"Median of {repeat} run(s). Machine: {machine}\n{table}\n")
    (args.output / "results.json").write_text(json.dumps(results, indent=2))
    plot(scenarios, results, labels, args.output / "latency.png")
    ours = results.get("ours", {})
    failed = [name for name, figures in ours.items() if math.isnan(figures["deliveries_per_s"])]
    if failed:
        print(f"Our server failed in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
