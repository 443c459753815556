"""Benchmark our chat server side by side with ncat's chat mode.

    python -m bench              the full run (about ten minutes), table and plot
    python -m bench --smoke      a few seconds with small numbers, to check it works
    python -m bench --only ours  skip ncat
    python -m bench --only ours --only ours-store --scenario small-room --scenario fan-out-200
                                 what the store (SQLite) costs, store off against on

Each scenario runs ``--repeat`` times against a fresh server process and the
median of each figure is reported; the servers take turns, run after run. A full run writes its results to
bench/results/; a smoke run writes to a temporary folder (``--output``
chooses another), so that it never replaces the published figures.

The scenarios whose clients speak WebSocket run against our server only:
ncat relays bytes and knows nothing of HTTP, so its column shows "-". So do
the scenarios of a shared room (``-redis``): two of our servers share one
room through a throwaway redis-server, half the clients on each, and their
server CPU and peak memory add up all three processes (each process's own
peak, summed), with rows for the chat servers and for redis-server. Without
redis-server, those scenarios are skipped with a note.

Every process the benchmark starts is stopped when its run ends, also when
the run fails or is interrupted (Ctrl+C, SIGTERM).
"""

import argparse
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

from bench.loadgen import QUICK, THOROUGH, LoadGenerator, Scenario, Transport
from bench.servers import (
    PROJECT,
    Deployment,
    Ncat,
    OurServer,
    OurServerOnOneCpu,
    OurServerWithStore,
    ServerFailed,
    ensure_ncat,
    shared_room_missing,
)
from bench.wsclient import ServerError

RESULTS = Path(__file__).resolve().parent / "results"

WS = Transport.WEBSOCKET
# The shared-room scenarios: the room of another scenario, split evenly between
# two of our servers (client i on server i % 2, so the senders are on both).
SHARED = "%s on 2 servers sharing it through Redis, half the clients on each; CPU and RSS of all 3 processes"
FULL = [
    Scenario("small-room", "10 clients, all sending at full speed", clients=10, senders=10, window=16, payload_bytes=64, duration_s=5),
    Scenario("small-room-ws", "the same over WebSocket", clients=10, senders=10, window=16, payload_bytes=64, duration_s=5, transport=WS),
    Scenario("mixed-room", "the same, 5 raw and 5 WebSocket clients", clients=10, senders=10, window=16, payload_bytes=64, duration_s=5, transport=Transport.MIXED),
    Scenario("fan-out-200", "200 clients, 2 senders at full speed", clients=200, senders=2, window=16, payload_bytes=64, duration_s=5),
    Scenario("fan-out-200-ws", "the same over WebSocket", clients=200, senders=2, window=16, payload_bytes=64, duration_s=5, transport=WS),
    Scenario("small-room-redis", SHARED % "small-room", clients=10, senders=10, window=16, payload_bytes=64, duration_s=5, servers=2),
    Scenario("fan-out-200-redis", SHARED % "fan-out-200", clients=200, senders=2, window=16, payload_bytes=64, duration_s=5, servers=2),
    Scenario("steady-100", "100 clients, each sending 2 lines/s", clients=100, senders=100, window=8, payload_bytes=4000, duration_s=8, rate_hz=2),
    Scenario("steady-100-deaf", "the same, plus 1 client that never reads", clients=101, senders=100, window=8, payload_bytes=4000, duration_s=8, rate_hz=2, non_readers=1),
    Scenario("connect-1000", "1000 clients connect at once, 1 sender at 20 lines/s", clients=1000, senders=1, window=8, payload_bytes=64, duration_s=3, rate_hz=20, connect_storm=True),
]

SMOKE = [
    Scenario("small-room", "5 clients, all at full speed", clients=5, senders=5, window=8, payload_bytes=64, duration_s=0.2),
    Scenario("small-room-ws", "the same over WebSocket", clients=5, senders=5, window=8, payload_bytes=64, duration_s=0.2, transport=WS),
    Scenario("mixed-room", "6 clients, 3 raw and 3 WebSocket", clients=6, senders=6, window=8, payload_bytes=64, duration_s=0.2, transport=Transport.MIXED),
    Scenario("fan-out-200", "20 clients, 2 senders", clients=20, senders=2, window=8, payload_bytes=64, duration_s=0.2),
    Scenario("fan-out-200-ws", "the same over WebSocket", clients=20, senders=2, window=8, payload_bytes=64, duration_s=0.2, transport=WS),
    Scenario("small-room-redis", SHARED % "small-room", clients=6, senders=6, window=8, payload_bytes=64, duration_s=0.2, servers=2),
    Scenario("fan-out-200-redis", SHARED % "fan-out-200", clients=20, senders=2, window=8, payload_bytes=64, duration_s=0.2, servers=2),
    Scenario("steady-100", "10 clients at 5 lines/s", clients=10, senders=10, window=4, payload_bytes=1000, duration_s=0.2, rate_hz=5),
    Scenario("steady-100-deaf", "the same plus 1 non-reader", clients=11, senders=10, window=4, payload_bytes=1000, duration_s=0.2, rate_hz=5, non_readers=1),
    Scenario("connect-1000", "50 clients connect at once", clients=50, senders=1, window=4, payload_bytes=64, duration_s=0.2, rate_hz=20, connect_storm=True),
]

# (key, heading, format) for each figure in the table. Figures measured in
# some scenarios only (the latency at each kind of client, in a mixed room;
# each kind of process's share, in a shared room) have rows only where they
# were measured.
FIGURES = [
    ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
    ("p50_ms", "latency p50 ms", "{:.2f}"),
    ("p90_ms", "latency p90 ms", "{:.2f}"),
    ("p99_ms", "latency p99 ms", "{:.2f}"),
    ("max_ms", "latency max ms", "{:.1f}"),
    ("p99_raw_ms", "  p99 at raw clients", "{:.2f}"),
    ("p99_websocket_ms", "  p99 at WebSocket clients", "{:.2f}"),
    ("cpu_ms_per_1000", "server CPU ms / 1000 deliveries", "{:.1f}"),
    ("cpu_chat_ms_per_1000", "  chat servers together", "{:.1f}"),
    ("cpu_redis_ms_per_1000", "  redis-server", "{:.1f}"),
    ("rss_mb", "server peak RSS MB", "{:.1f}"),
    ("rss_chat_mb", "  chat servers together", "{:.1f}"),
    ("rss_redis_mb", "  redis-server", "{:.1f}"),
    ("accepted_s", "all accepted (first line), s", "{:.3f}"),
    ("connect_s", "all in the chat, s", "{:.3f}"),
    ("not_joined", "clients never in the chat", "{:.0f}"),
    ("lost", "lost lines", "{:.0f}"),
    ("duplicated", "duplicated", "{:.0f}"),
    ("reordered", "reordered", "{:.0f}"),
    ("one_order", "one order for all (1 = yes)", "{:.0f}"),
    ("non_readers_dropped", "non-readers disconnected", "{:.0f}"),
    ("loadgen_cpu_pct", "load generator CPU, % of a core", "{:.0f}"),
]
OPTIONAL = {"p99_raw_ms", "p99_websocket_ms", "cpu_chat_ms_per_1000", "cpu_redis_ms_per_1000", "rss_chat_mb", "rss_redis_mb"}
ALWAYS = {key for key, *_ in FIGURES} - OPTIONAL  # figures of every scenario

SERVERS = {"ours": OurServer, "ours-one-cpu": OurServerOnOneCpu, "ours-store": OurServerWithStore, "ncat": Ncat}
DEFAULT_SERVERS = ("ours", "ours-one-cpu", "ncat")


def why_not(server_class, scenario: Scenario) -> "str | None":
    """Why ``server_class`` cannot run ``scenario`` (a few words), or None if it can."""
    if scenario.needs_websocket and not server_class.speaks_websocket:
        return "no WebSocket"
    if scenario.shares_room and not server_class.shares_rooms:
        return "no shared room"
    return None


def deployment_for(label: str, scenario: Scenario, output: Path):
    """A function that starts the processes for one run of ``scenario`` on the server ``label``."""
    if scenario.shares_room:
        return partial(Deployment.shared_room, scenario.servers, output, label)
    return partial(Deployment.single, SERVERS[label], output / f"{label}-server.log")


def failed_figures(error: Exception) -> dict:
    """The figures of a run that failed: NaN, but for how many clients never joined, if known."""
    print(f"    failed: {error}", file=sys.stderr)
    failed = {key: float("nan") for key in ALWAYS}
    failed["not_joined"] = getattr(error, "missing", float("nan"))
    return failed


def measure(start_deployment, scenario: Scenario, patience) -> dict:
    """One run of ``scenario`` against a fresh deployment, which is stopped whatever happens."""
    try:
        deployment = start_deployment()
    except ServerFailed as error:
        return failed_figures(error)
    try:
        generator = LoadGenerator(
            deployment.addresses, scenario, deployment.join_line, deployment.cpu_seconds_each, patience
        )
        outcome = generator.run()
        rss_each = deployment.peak_rss_mb_each()
    except (OSError, TimeoutError, ServerError) as error:
        return failed_figures(error)
    finally:
        deployment.stop()
    deliveries_total = len(outcome.latencies_ns)

    def per_1000(cpu_s: float) -> float:
        return 1e6 * cpu_s / deliveries_total if deliveries_total else float("nan")

    figures = {
        "deliveries_per_s": outcome.deliveries_per_s,
        "p50_ms": outcome.latency_ms(50),
        "p90_ms": outcome.latency_ms(90),
        "p99_ms": outcome.latency_ms(99),
        "max_ms": outcome.latency_ms(100),
        "cpu_ms_per_1000": per_1000(outcome.cpu_s),
        "rss_mb": sum(rss_each),  # each process's own peak, summed
        "accepted_s": outcome.accepted_s,
        "connect_s": outcome.connect_s,
        "not_joined": 0,
        "lost": outcome.lost,
        "duplicated": outcome.duplicated,
        "reordered": outcome.reordered,
        "one_order": int(outcome.same_order),
        "non_readers_dropped": outcome.non_readers_dropped,
        "loadgen_cpu_pct": 100 * outcome.generator_cpu_s / outcome.duration_s,
    }
    if scenario.transport is Transport.MIXED:
        figures["p99_raw_ms"] = outcome.latency_ms(99, "raw")
        figures["p99_websocket_ms"] = outcome.latency_ms(99, "websocket")
    roles = deployment.roles
    if len(set(roles)) > 1:  # chat servers and redis-server: what each kind cost
        for role in dict.fromkeys(roles):
            figures[f"cpu_{role}_ms_per_1000"] = per_1000(
                sum(cpu for cpu, its_role in zip(outcome.cpu_s_each, roles) if its_role == role)
            )
            figures[f"rss_{role}_mb"] = sum(rss for rss, its_role in zip(rss_each, roles) if its_role == role)
    return figures


def median_of(runs: "list[dict]") -> dict:
    """The median of each figure over the runs that completed (NaN if none did)."""
    completed = [run for run in runs if not math.isnan(run["deliveries_per_s"])]
    if not completed:
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {key: statistics.median(run[key] for run in completed) for key in completed[0]}


RATIO_WIDTH = 20  # "ours-one-cpu/ncat" and a space or two


def ratio(ours: "float | None", theirs: "float | None") -> str:
    if ours is None or theirs is None or theirs == 0 or math.isnan(theirs) or math.isnan(ours):
        return "-"
    return f"{ours / theirs:.2f}×"


def print_table(scenarios, results: dict, labels) -> str:
    """The table, one block per scenario; "-" where a server did not run the scenario.

    Beside the figures, a column compares each server with the last one
    (ncat, when it runs): "ours/ncat", "ours-one-cpu/ncat".
    """
    lines = []
    compared = [(index, f"{label}/{labels[-1]}") for index, label in enumerate(labels[:-1])]
    for scenario in scenarios:
        lines.append(f"\n{scenario.name}: {scenario.title}")
        header = f"  {'figure':<34}" + "".join(f"{label:>14}" for label in labels)
        header += "".join(f"{heading:>{RATIO_WIDTH}}" for _, heading in compared)
        lines.append(header)
        measured = [results[label].get(scenario.name) for label in labels]
        for key, heading, fmt in FIGURES:
            values = [figures.get(key) if figures is not None else None for figures in measured]
            if all(value is None for value in values):
                continue  # not a figure of this scenario
            row = f"  {heading:<34}" + "".join(f"{'-' if v is None else fmt.format(v):>14}" for v in values)
            row += "".join(f"{ratio(values[index], values[-1]):>{RATIO_WIDTH}}" for index, _ in compared)
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
    columns = min(4, len(scenarios))
    rows = math.ceil(len(scenarios) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), sharey=True, squeeze=False)
    axes = axes.flatten()
    colors = {"ours": "#2a7ab0", "ours-one-cpu": "#7b5ea7", "ours-store": "#5aa469", "ncat": "#c8553d"}
    width = 0.38
    for axis, scenario in zip(axes, scenarios):
        notes = []
        for offset, label in enumerate(labels):
            figures = results[label].get(scenario.name)
            if figures is None:
                notes.append(f"{label}: {why_not(SERVERS[label], scenario) or 'not run'}")
                continue
            if math.isnan(figures["p50_ms"]):
                notes.append(f"{label}: did not finish")
            values = [figures[key] for key, _ in percentiles]
            positions = [i + (offset - (len(labels) - 1) / 2) * width for i in range(len(percentiles))]
            axis.bar(positions, values, width, label=label, color=colors.get(label))
        if notes:
            axis.text(0.5, 0.5, "\n".join(notes), transform=axis.transAxes, ha="center", fontsize=9)
        axis.set_title(scenario.name, fontsize=10)
        axis.set_xticks(range(len(percentiles)), [name for _, name in percentiles])
        axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    for axis in axes[len(scenarios) :]:
        axis.set_visible(False)
    for row in range(rows):
        axes[row * columns].set_ylabel("latency, ms (log scale)")
    axes[0].legend()
    figure.suptitle("End-to-end latency: our server beside ncat --chat (lower is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}")


def describe_commit() -> str:
    """The commit measured, as ``git rev-parse --short HEAD`` names it, or "unknown" outside git."""
    def git(*args: str) -> "str | None":
        try:
            done = subprocess.run(
                ["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    # Changed files would make the commit's name a lie; the results folder does not count.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return f"{commit} with uncommitted changes" if changed else commit


def describe_machine() -> str:
    """The processor, cores, Python and kernel, and how busy the machine was at the start."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0))
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return (
        f"{model} ({platform.machine()}), {cores} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}{load}"
    )


def stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the chat server beside ncat --chat.")
    parser.add_argument(
        "--smoke", action="store_true", help="a quick run with small numbers, written to a temporary folder"
    )
    parser.add_argument("--repeat", type=int, default=None, help="runs per scenario (default: 3, smoke: 1)")
    parser.add_argument("--only", choices=list(SERVERS), action="append", help="benchmark this server, may be repeated: ours, ours-one-cpu (ours with --one-cpu), ncat, or ours-store (ours keeping its room in SQLite; --only ours --only ours-store shows what the store costs)")
    parser.add_argument("--scenario", action="append", help="run only the named scenario(s)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for the table, JSON and plot (default: bench/results; smoke: a temporary folder)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write the table and JSON only (drawing takes seconds)")
    args = parser.parse_args(argv)

    scenarios = SMOKE if args.smoke else FULL
    if args.scenario:
        unknown = set(args.scenario) - {s.name for s in scenarios}
        if unknown:
            parser.error(f"no scenario {', '.join(sorted(unknown))}; there are {', '.join(s.name for s in scenarios)}")
        scenarios = [s for s in scenarios if s.name in args.scenario]
    shared = [s.name for s in scenarios if s.shares_room]
    missing = shared_room_missing() if shared else None
    if missing:
        print(f"Skipping {', '.join(shared)}: {missing}.", file=sys.stderr)
        scenarios = [s for s in scenarios if not s.shares_room]
        if not scenarios:
            return 0
    output = args.output
    if output is None:
        output = Path(tempfile.mkdtemp(prefix="chat-bench-smoke-")) if args.smoke else RESULTS

    # 1000 clients need 1000 descriptors here and as many in the server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    repeat = args.repeat or (1 if args.smoke else 3)
    patience = QUICK if args.smoke else THOROUGH
    servers = {label: SERVERS[label] for label in args.only or DEFAULT_SERVERS}
    if "ncat" in servers and not ensure_ncat():
        print("ncat is not available: benchmarking our server alone.", file=sys.stderr)
        del servers["ncat"]
    output.mkdir(parents=True, exist_ok=True)
    commit, machine = describe_commit(), describe_machine()

    results = {label: {} for label in servers}
    # SIGTERM ends the benchmark as Ctrl+C does, through every finally that stops a server.
    previous_sigterm = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        for scenario in scenarios:
            running = [label for label, server_class in servers.items() if not why_not(server_class, scenario)]
            starts = {label: deployment_for(label, scenario, output) for label in running}
            runs = {label: [] for label in running}
            # The servers take turns, run after run: a machine whose speed
            # drifts over minutes (a shared one does) then slows them alike.
            for attempt in range(repeat):
                for label in running:
                    print(f"  {scenario.name} / {label} / run {attempt + 1} of {repeat}...", file=sys.stderr, flush=True)
                    runs[label].append(measure(starts[label], scenario, patience))
            for label in running:
                results[label][scenario.name] = median_of(runs[label])
    except KeyboardInterrupt:
        print("Interrupted: every server the benchmark started has been stopped.", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)

    labels = list(servers)
    heading = f"Median of {repeat} run(s) per figure. Commit: {commit}.\nMachine: {machine}."
    print(f"\n{heading}")
    table = print_table(scenarios, results, labels)
    (output / "table.txt").write_text(f"{heading}\n{table}\n")
    (output / "results.json").write_text(json.dumps({"commit": commit, "machine": machine, "results": results}, indent=2))
    if not args.no_plot:
        plot(scenarios, results, labels, output / "latency.png")
    print(f"results written to {output}")
    failed = [
        f"{name} ({label})"
        for label, ours in results.items() if label.startswith("ours")
        for name, figures in ours.items() if math.isnan(figures["deliveries_per_s"])
    ]
    if failed:
        print(f"Our server failed in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
