"""
One command that compares this repository's SOCKS server with Dante and
microsocks (and, optionally, an older checkout of our server) on every
figure the other benchmarks measure one at a time, and prints one table.

The configurations, every one on 127.0.0.1:

  - C{direct}: no proxy, the client straight to the target (the reference
    for throughput, and what the added latencies subtract);
  - C{socks-twisted}: this checkout's server as an operator starts it,
    C{twistd -n --pidfile= socks --port tcp:0:interface=127.0.0.1} (plus
    C{--server-args}, if given);
  - C{socks-twisted (base)}: the same from C{--baseline-root}, if given;
  - C{dante} (C{danted}) and C{microsocks}, from the system, allowed to
    reach 127.0.0.0/8 only.

Every proxy is started once and kept for the whole run.  The measurements
(the sections, see L{SECTIONS}) are repeated C{--rounds} times; within a
round every configuration is measured in turn, section by section, the order
of the configurations rotating from one round to the next, so that a slow
spell of a shared machine spreads over all of them.  Each figure is
reported as the median over the rounds, with the minimum and maximum, and as
a ratio to Dante's and to microsocks' medians.

CPU time is user + system time from C{/proc/PID/stat}, summed over the
proxy's whole process tree (Dante forks children), read just before and
just after each measurement; memory is C{VmRSS} from C{/proc/PID/status}
and descriptors the entries of C{/proc/PID/fd}, summed the same way.

Every measurement is bounded in count and in time (C{--timeout}), every
process started here is stopped at the end, and the exit status is 1 if
any measurement failed (or, with the environment variable C{CI=true}, if
Dante or microsocks is not installed).

Run C{python bench/compare.py --help} for the options; see
C{bench/README.rst} and C{docs/performance.rst}.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy checks this file as the module bench.compare
    from bench import (
        _measure,
        _servers,
        connection_rate,
        relay_throughput,
        udp_throughput,
    )
else:  # run as bench/compare.py, with bench/ on sys.path
    import _measure
    import _servers
    import connection_rate
    import relay_throughput
    import udp_throughput

LOOPBACK = _servers.LOOPBACK
DIRECT = "direct"
OURS = "socks-twisted"
BASE = "socks-twisted (base)"
DANTE = "dante"
MICROSOCKS = "microsocks"
PEERS = (DANTE, MICROSOCKS)

SECTIONS = ("bulk", "conn", "latency", "udp", "idle")

#: The 64 bytes echoed by the latency measurements (as by connection_rate).
MESSAGE = connection_rate.PAYLOAD

#: What the table shows for a figure a configuration does not have, and
#: between a minimum and a maximum: an en dash.
DASH = "\N{EN DASH}"


class MeasurementError(Exception):
    """
    A measurement failed.
    """


# Sizes.


@dataclass(frozen=True)
class Sizes:
    """
    How much one measurement of each section does.

    @ivar bulkBytes: Bytes of one bulk transfer (one up, one down).
    @ivar bufferBytes: Bytes per C{send} / C{recv} call of a bulk transfer.
    @ivar connections: Connections of one connection-rate measurement.
    @ivar concurrency: Of those, in flight at a time.
    @ivar warmup: Connections made through each proxy once it started, not
        counted.
    @ivar roundTrips: Round trips of a 64-byte message on one established
        session, for the latency of a relayed session.
    @ivar newConnections: Connections made one at a time, for the latency of
        a new connection.
    @ivar datagrams: Datagrams of one UDP measurement, at most.
    @ivar udpSeconds: Seconds of one UDP measurement, at most.
    @ivar udpBytes: Payload bytes of a datagram.
    @ivar udpWindow: Datagrams outstanding at a time.
    @ivar idleSessions: Relayed sessions held open, idle, for the footprint.
    @ivar settle: Seconds to wait before reading a footprint.
    """

    bulkBytes: int = 1024**3
    bufferBytes: int = 1024**2
    connections: int = 2000
    concurrency: int = 50
    warmup: int = 200
    roundTrips: int = 10_000
    newConnections: int = 1000
    datagrams: int = 100_000
    udpSeconds: float = 10.0
    udpBytes: int = 512
    udpWindow: int = 32
    idleSessions: int = 500
    settle: float = 0.5


FULL = Sizes()
QUICK = Sizes(
    bulkBytes=4 * 1024**2,
    bufferBytes=256 * 1024,
    connections=50,
    concurrency=10,
    warmup=5,
    roundTrips=50,
    newConnections=10,
    datagrams=300,
    udpSeconds=1.0,
    idleSessions=10,
    settle=0.05,
)


# Figures.


@dataclass(frozen=True)
class Metric:
    """
    One figure of the table.

    @ivar key: Its name in the JSON results.
    @ivar label: Its name in the table, with its unit.
    @ivar better: C{"higher"} or C{"lower"}.
    @ivar direct: Whether the direct configuration has it.
    """

    key: str
    label: str
    better: str
    direct: bool = False


METRICS = {
    "bulk": [
        Metric("bulk_up_gbps", "bulk up, GB/s", "higher", True),
        Metric("bulk_down_gbps", "bulk down, GB/s", "higher", True),
        Metric("bulk_up_cpu_s_per_gb", "bulk up, proxy CPU s/GB", "lower"),
        Metric("bulk_down_cpu_s_per_gb", "bulk down, proxy CPU s/GB", "lower"),
    ],
    "conn": [
        Metric("conn_per_s", "connections/s, {concurrency} concurrent", "higher", True),
        Metric("conn_cpu_us", "proxy CPU µs/connection", "lower"),
    ],
    "latency": [
        Metric("rtt_added_p50_us", "added round trip p50, µs (session)", "lower"),
        Metric("rtt_added_p99_us", "added round trip p99, µs (session)", "lower"),
        Metric("new_added_p50_us", "added latency p50, µs (new conn.)", "lower"),
        Metric("new_added_p99_us", "added latency p99, µs (new conn.)", "lower"),
    ],
    "udp": [
        Metric("udp_per_s", "UDP datagrams/s ({udpBytes} B echo)", "higher", True),
        Metric("udp_cpu_us", "UDP proxy CPU µs/datagram", "lower"),
    ],
    "idle": [
        Metric("idle_rss_kib", "RSS KiB/idle session", "lower"),
        Metric("idle_fds", "file descriptors/idle session", "lower"),
    ],
}

#: Figures of the direct configuration that the table does not show but the
#: added latencies are computed from, and the notes print.
DIRECT_LATENCY = ("rtt_p50_us", "rtt_p99_us", "new_p50_us", "new_p99_us")


@dataclass
class Configuration:
    """
    One thing measured: C{direct}, or a proxy.

    @ivar proxy: The proxy measured, kept for the whole run (none for
        direct).
    @ivar fresh: Starts another instance of the proxy (in a directory of
        its own), for the idle section.
    @ivar values: Each figure's value in each round it was measured.
    @ivar errors: Each failed section's first error; the section is not
        measured again.
    @ivar notes: Remarks for the report (datagrams lost, say).
    """

    name: str
    proxy: _servers.Proxy | None = None
    fresh: Callable[[], AbstractContextManager[_servers.Proxy]] | None = None
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figures: dict[str, float]) -> None:
        """
        Record one round's figures.
        """
        for key, value in figures.items():
            self.values.setdefault(key, []).append(value)

    def median(self, key: str) -> float | None:
        """
        The median of a figure over the rounds, if it was measured.
        """
        values = self.values.get(key)
        return statistics.median(values) if values else None


def percentile(values: Sequence[float], fraction: float) -> float:
    """
    The nearest-rank percentile of C{values}.
    """
    if not values:
        raise MeasurementError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# The measurements.  Each takes the configuration and what the run started,
# and returns the figures of one round.


@dataclass
class Context:
    """
    What every measurement needs: the sizes, the echo servers' ports and a
    time limit.
    """

    sizes: Sizes
    tcpEchoPort: int
    udpEchoPort: int
    timeout: float


def _cpu(configuration: Configuration) -> Callable[[], _measure.CPUTimes] | None:
    proxy = configuration.proxy
    if proxy is None:
        return None
    pid = proxy.process.pid
    return lambda: _measure.treeCPU(pid)


def _connect(configuration: Configuration) -> relay_throughput.Connector:
    proxy = configuration.proxy
    if proxy is None:
        return relay_throughput.directConnect
    return relay_throughput.connector(proxy)


def measureBulk(configuration: Configuration, context: Context) -> dict[str, float]:
    """
    One transfer up (client to target) and one down, each timed from the
    first byte to end-of-file at the receiver.
    """
    sizes = context.sizes
    figures: dict[str, float] = {}
    gigabytes = sizes.bulkBytes / 1e9
    for direction, upload in (("up", True), ("down", False)):
        try:
            seconds, used = relay_throughput.transfer(
                _connect(configuration),
                sizes.bulkBytes,
                sizes.bufferBytes,
                context.timeout,
                _cpu(configuration),
                upload=upload,
            )
        except relay_throughput.TransferError as e:
            raise MeasurementError(f"{direction}: {e}") from e
        figures[f"bulk_{direction}_gbps"] = gigabytes / seconds
        if used is not None:
            figures[f"bulk_{direction}_cpu_s_per_gb"] = used.total / gigabytes
    return figures


def _connections(
    configuration: Configuration, context: Context, count: int, concurrency: int
) -> connection_rate.RunResult:
    proxy = configuration.proxy
    result = connection_rate.runConnections(
        proxy.port if proxy else None,
        context.tcpEchoPort,
        count,
        concurrency,
        context.timeout,
        proxy.process.pid if proxy else None,
    )
    if result.failures:
        raise MeasurementError(
            f"{result.failures} of {count} connections failed: "
            + "; ".join(sorted(set(result.errors)))
        )
    return result


def measureConnections(
    configuration: Configuration, context: Context
) -> dict[str, float]:
    """
    Short connections, C{concurrency} in flight: connect, SOCKS5 no-auth,
    CONNECT to the echo server, 64 bytes echoed, close.
    """
    sizes = context.sizes
    result = _connections(configuration, context, sizes.connections, sizes.concurrency)
    figures = {"conn_per_s": len(result.latencies) / result.seconds}
    if result.proxyCPU is not None:
        figures["conn_cpu_us"] = result.proxyCPU.total / len(result.latencies) * 1e6
    return figures


def roundTrips(sock: socket.socket, count: int, deadline: float) -> list[float]:
    """
    The seconds each of C{count} round trips of L{MESSAGE} took on C{sock},
    one at a time.
    """
    times: list[float] = []
    for _ in range(count):
        if time.monotonic() > deadline:
            raise MeasurementError(f"{len(times)} of {count} round trips in time")
        started = time.perf_counter()
        sock.sendall(MESSAGE)
        echoed = relay_throughput.recvExactly(sock, len(MESSAGE))
        times.append(time.perf_counter() - started)
        if echoed != MESSAGE:
            raise MeasurementError("the echo differs")
    return times


def measureLatency(configuration: Configuration, context: Context) -> dict[str, float]:
    """
    Unloaded latency, one thing at a time: the round trip of a 64-byte
    message on one established session, and a whole new connection (connect
    to the echo message's last byte, as in L{measureConnections}).

    The figures are absolute here; L{Run.measure} subtracts the direct ones
    of the same round.
    """
    sizes = context.sizes
    deadline = time.monotonic() + context.timeout
    try:
        sock = _connect(configuration)(context.tcpEchoPort, context.timeout)
    except (OSError, relay_throughput.TransferError) as e:
        raise MeasurementError(f"connect: {e}") from e
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        warm = max(1, sizes.roundTrips // 10)
        try:
            roundTrips(sock, warm, deadline)
            session = roundTrips(sock, sizes.roundTrips, deadline)
        except (OSError, relay_throughput.TransferError) as e:
            raise MeasurementError(f"round trip: {e}") from e
    fresh = _connections(configuration, context, sizes.newConnections, 1).latencies
    return {
        "rtt_p50_us": percentile(session, 0.50) * 1e6,
        "rtt_p99_us": percentile(session, 0.99) * 1e6,
        "new_p50_us": percentile(fresh, 0.50) * 1e6,
        "new_p99_us": percentile(fresh, 0.99) * 1e6,
    }


def measureUDP(configuration: Configuration, context: Context) -> dict[str, float]:
    """
    Datagrams echoed by the UDP echo server, a window of them outstanding,
    through a UDP ASSOCIATE of the proxy (or straight to it).
    """
    sizes = context.sizes
    arguments = (sizes.udpBytes, sizes.udpWindow, sizes.datagrams, sizes.udpSeconds)
    lossWait = 0.2
    cpu = _cpu(configuration)
    proxy = configuration.proxy
    before = cpu() if cpu else None
    try:
        if proxy is None:
            result = udp_throughput.measureDirect(
                context.udpEchoPort, *arguments, lossWait
            )
        else:
            result = udp_throughput.measureRelayed(
                proxy.port, context.udpEchoPort, *arguments, lossWait
            )
    except udp_throughput.MeasurementError as e:
        raise MeasurementError(str(e)) from e
    after = cpu() if cpu else None
    if result.received == 0:
        raise MeasurementError(f"none of {result.sent} datagrams came back")
    if result.lost:
        configuration.notes.append(
            f"UDP: {result.lost} of {result.sent} datagrams lost in one round"
        )
    figures = {"udp_per_s": result.rate}
    if before is not None and after is not None:
        figures["udp_cpu_us"] = (after - before).total / result.received * 1e6
    return figures


def measureIdle(configuration: Configuration, context: Context) -> dict[str, float]:
    """
    The proxy's memory and descriptors per relayed session held open, idle.

    A fresh instance of the proxy is started, so that memory freed by the
    other sections (which the allocators keep, and reuse) cannot hide what
    the sessions take.  After one session opened and closed (so that
    whatever the first session initializes is not counted), its process
    tree's footprint is read; then C{idleSessions} sessions are opened, each
    through the SOCKS5 handshake, CONNECT and one 64-byte echo, and the
    footprint is read again; the difference is divided by their number.
    """
    assert configuration.fresh is not None
    sizes = context.sizes
    deadline = time.monotonic() + context.timeout
    sessions: list[socket.socket] = []

    def session(port: int) -> socket.socket:
        sock = relay_throughput.socks5Connect(port, context.tcpEchoPort, 10)
        sessions.append(sock)
        roundTrips(sock, 1, deadline)
        return sock

    with configuration.fresh() as proxy:
        pid = proxy.process.pid
        try:
            session(proxy.port).close()
            sessions.clear()
            time.sleep(sizes.settle)
            before = _measure.treeFootprint(pid)
            for _ in range(sizes.idleSessions):
                if time.monotonic() > deadline:
                    raise MeasurementError(f"{len(sessions)} sessions opened in time")
                session(proxy.port)
            time.sleep(sizes.settle)
            after = _measure.treeFootprint(pid)
        except (OSError, relay_throughput.TransferError) as e:
            raise MeasurementError(f"after {len(sessions)} sessions: {e}") from e
        finally:
            for sock in sessions:
                sock.close()
    count = len(sessions)
    return {
        "idle_rss_kib": (after.rssKiB - before.rssKiB) / count,
        "idle_fds": (after.fds - before.fds) / count,
    }


MEASURE: dict[str, Callable[[Configuration, Context], dict[str, float]]] = {
    "bulk": measureBulk,
    "conn": measureConnections,
    "latency": measureLatency,
    "udp": measureUDP,
    "idle": measureIdle,
}


def applies(section: str, name: str) -> bool:
    """
    Whether configuration C{name} has the figures of C{section}: direct has
    no proxy footprint, microsocks no UDP relay.
    """
    if section == "idle":
        return name != DIRECT
    if section == "udp":
        return name != MICROSOCKS
    return True


# The run.


@dataclass
class Run:
    """
    A whole comparison: its configurations and how they were measured.
    """

    configurations: dict[str, Configuration]
    sections: list[str]
    sizes: Sizes
    rounds: int
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def measure(self, context: Context) -> None:
        """
        Measure every section of every configuration, round by round.
        """
        names = list(self.configurations)
        for number in range(self.rounds):
            shift = number % len(names)
            order = names[shift:] + names[:shift]
            print(f"round {number + 1} of {self.rounds}: {', '.join(order)}")
            sys.stdout.flush()
            for section in self.sections:
                latencies: dict[str, dict[str, float]] = {}
                for name in order:
                    configuration = self.configurations[name]
                    if not applies(section, name) or section in configuration.errors:
                        continue
                    proxy = configuration.proxy
                    try:
                        if proxy is not None and proxy.process.poll() is not None:
                            raise MeasurementError(
                                f"the proxy exited ({proxy.process.returncode})"
                            )
                        figures = MEASURE[section](configuration, context)
                    except (MeasurementError, OSError, RuntimeError) as e:
                        # RuntimeError: a fresh instance did not start.
                        configuration.errors[section] = f"{type(e).__name__}: {e}"
                        continue
                    if section == "latency":
                        latencies[name] = figures
                    else:
                        configuration.add(figures)
                self._addLatencies(latencies)

    def _addLatencies(self, latencies: dict[str, dict[str, float]]) -> None:
        """
        Record one round's latencies, each proxy's as added to the direct
        ones of the same round.
        """
        direct = latencies.get(DIRECT)
        if direct is None:
            return
        self.configurations[DIRECT].add(direct)
        for name, figures in latencies.items():
            if name == DIRECT:
                continue
            added = {}
            for what in ("rtt", "new"):
                for level in ("p50", "p99"):
                    mine = figures[f"{what}_{level}_us"]
                    added[f"{what}_added_{level}_us"] = (
                        mine - direct[f"{what}_{level}_us"]
                    )
            self.configurations[name].add(added)

    @property
    def failed(self) -> bool:
        """
        Whether any measurement failed.
        """
        return any(c.errors for c in self.configurations.values())

    def json(self) -> dict[str, Any]:
        """
        The raw results, for C{--json}.
        """
        return {
            "versions": _servers.versions(),
            "sizes": asdict(self.sizes),
            "rounds": self.rounds,
            "sections": self.sections,
            "seconds": self.seconds,
            "notes": self.notes,
            "configurations": {
                name: {
                    "values": c.values,
                    "errors": c.errors,
                    "notes": c.notes,
                }
                for name, c in self.configurations.items()
            },
        }


def _number(value: float) -> str:
    """
    C{value} with about three significant digits, never in exponent form.
    """
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(mine: float | None, theirs: float | None) -> str:
    """
    C{mine / theirs}, or a dash when a ratio would mean nothing: either is
    missing, or not above zero (an added latency within noise, say).
    """
    if mine is None or theirs is None or mine <= 0 or theirs <= 0:
        return DASH
    return f"{mine / theirs:.2f}"


def table(run: Run) -> list[str]:
    """
    The lines of the table: for each figure, one line per configuration
    with its median, minimum and maximum over the rounds, and the ratios of its
    median to Dante's and to microsocks'.
    """
    lines = []
    header = (
        f"{'figure / configuration':<44} {'median':>9} {'min' + DASH + 'max':>17}"
        f" {'÷ dante':>8} {'÷ microsocks':>12}"
    )
    lines += [header, "-" * len(header)]
    labels = asdict(run.sizes)
    dante = run.configurations.get(DANTE)
    microsocks = run.configurations.get(MICROSOCKS)
    for section in run.sections:
        for metric in METRICS[section]:
            label = metric.label.format(**labels)
            lines.append(f"{label} ({metric.better} is better)")
            for name, configuration in run.configurations.items():
                if name == DIRECT and not metric.direct:
                    continue
                row = f"  {name:<42}"
                values = configuration.values.get(metric.key)
                if not applies(section, name):
                    lines.append(f"{row} {DASH:>9}")
                    continue
                if section in configuration.errors or not values:
                    lines.append(f"{row} {'FAILED':>9}")
                    continue
                median = statistics.median(values)
                spread = f"{_number(min(values))}{DASH}{_number(max(values))}"
                toDante = _ratio(median, dante.median(metric.key) if dante else None)
                toMicrosocks = _ratio(
                    median, microsocks.median(metric.key) if microsocks else None
                )
                lines.append(
                    f"{row} {_number(median):>9} {spread:>17}"
                    f" {toDante:>8} {toMicrosocks:>12}"
                )
    return lines


def report(run: Run) -> None:
    """
    Print the table, then the direct latencies, the notes and the failures.
    """
    print()
    for line in table(run):
        print(line)
    print()
    direct = run.configurations[DIRECT]
    if "latency" in run.sections and direct.values.get("rtt_p50_us"):
        figures = {key: direct.median(key) or 0.0 for key in DIRECT_LATENCY}
        print(
            "direct latency (medians over the rounds): round trip on a session "
            f"p50 {_number(figures['rtt_p50_us'])} µs, "
            f"p99 {_number(figures['rtt_p99_us'])} µs; "
            f"new connection p50 {_number(figures['new_p50_us'])} µs, "
            f"p99 {_number(figures['new_p99_us'])} µs"
        )
    for note in run.notes:
        print(f"note: {note}")
    for name, configuration in run.configurations.items():
        for note in sorted(set(configuration.notes)):
            print(f"note: {name}: {note}")
        for section, error in configuration.errors.items():
            print(f"FAILED: {name}, {section}: {error}")
    minutes, seconds = divmod(round(run.seconds), 60)
    print(f"the run took {minutes} min {seconds} s")


@contextmanager
def _startAll(
    run: Run,
    directory: Path,
    roots: dict[str, Path],
    serverArguments: dict[str, Sequence[str]],
    warmup: int,
    context: Callable[[], Context],
) -> Iterator[None]:
    """
    Start every proxy of C{run}, warm each one up with C{warmup} connections,
    and stop them all afterwards.
    """
    with ExitStack() as stack:
        for name, configuration in run.configurations.items():
            if name == DIRECT:
                continue
            root = roots.get(name, _servers.REPOSITORY)
            arguments = serverArguments.get(name, ())
            freshDirectory = directory / f"idle-{name.replace(' ', '-')}"
            freshDirectory.mkdir()
            configuration.fresh = partial(
                _servers.startProxy, name, freshDirectory, root, arguments
            )
            try:
                configuration.proxy = stack.enter_context(
                    _servers.startProxy(name, directory, root, arguments)
                )
            except (RuntimeError, OSError) as e:
                for section in run.sections:
                    configuration.errors[section] = f"did not start: {e}"
                continue
            if warmup:
                try:
                    _connections(configuration, context(), warmup, 10)
                except MeasurementError as e:
                    configuration.notes.append(f"warm-up: {e}")
        yield


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line.
    """
    parser = argparse.ArgumentParser(
        description=(
            "Compare socks-twisted with Dante, microsocks and no proxy at all: "
            "bulk throughput, connection rate, added latency, UDP relay rate "
            "and the footprint of idle sessions, with the proxies' CPU, in one "
            "table."
        )
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="times every measurement is repeated, interleaved (default: 5; "
        "1 with --quick)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, from {','.join(SECTIONS)} "
        "(default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one round, a few seconds in all: checks that "
        "every measurement works; the figures mean nothing",
    )
    parser.add_argument(
        "--baseline-root",
        type=Path,
        default=None,
        help=f"also measure the server of this checkout, as {BASE!r}",
    )
    parser.add_argument(
        "--server-args",
        default="",
        help="more options for our server's twistd command line (shell "
        "syntax), for this checkout's and the baseline's, e.g. '--relay copy'",
    )
    parser.add_argument(
        "--base-args",
        default=None,
        help="options for the baseline's server instead of --server-args, "
        "e.g. --baseline-root . --base-args '--workers 1' --server-args "
        "'--workers 2' to compare one worker with two",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the raw results there, as JSON",
    )
    parser.add_argument(
        "--bulk-size",
        type=relay_throughput.parseSize,
        default=None,
        help=f"bytes per bulk transfer (default: {FULL.bulkBytes // 1024**2}MiB)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help=f"connections per connection-rate measurement "
        f"(default: {FULL.connections})",
    )
    parser.add_argument(
        "--datagrams",
        type=int,
        default=None,
        help=f"datagrams per UDP measurement, at most (default: {FULL.datagrams})",
    )
    parser.add_argument(
        "--idle-sessions",
        type=int,
        default=None,
        help=f"idle sessions held open (default: {FULL.idleSessions})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds after which one measurement is cut off (default: 60)",
    )
    arguments = parser.parse_args(argv)
    arguments.sections = [s.strip() for s in arguments.only.split(",") if s.strip()]
    unknown = set(arguments.sections) - set(SECTIONS)
    if unknown or not arguments.sections:
        parser.error(f"--only: choose from {','.join(SECTIONS)}")
    if arguments.rounds is None:
        arguments.rounds = 1 if arguments.quick else 5
    sizes = QUICK if arguments.quick else FULL
    overrides = {
        "bulkBytes": arguments.bulk_size,
        "connections": arguments.connections,
        "datagrams": arguments.datagrams,
        "idleSessions": arguments.idle_sessions,
    }
    arguments.sizes = replace(
        sizes, **{key: value for key, value in overrides.items() if value is not None}
    )
    for name in ("rounds", "connections", "datagrams", "idle_sessions"):
        value = getattr(arguments, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if arguments.baseline_root is not None:
        arguments.baseline_root = arguments.baseline_root.resolve()
    arguments.server_args = shlex.split(arguments.server_args)
    arguments.base_args = (
        arguments.server_args
        if arguments.base_args is None
        else shlex.split(arguments.base_args)
    )
    return arguments


def main(argv: Sequence[str]) -> int:
    """
    Run the comparison; the exit status is 1 if anything failed.
    """
    arguments = parseArguments(argv)
    began = time.monotonic()
    sizes: Sizes = arguments.sizes
    underCI = os.environ.get("CI", "").lower() == "true"
    names = [DIRECT, OURS]
    roots = {OURS: _servers.REPOSITORY}
    if arguments.baseline_root is not None:
        names.append(BASE)
        roots[BASE] = arguments.baseline_root
    notes: list[str] = []
    missing = False
    for name in PEERS:
        program = _servers.PEER_PROGRAMS[name]
        if _servers.findProgram(program) is None:
            notes.append(f"{name}: skipped, {program} is not installed")
            missing = missing or underCI
        else:
            names.append(name)
    run = Run(
        {name: Configuration(name) for name in names},
        arguments.sections,
        sizes,
        arguments.rounds,
        notes,
    )

    print(
        f"compare: {', '.join(run.sections)}; {run.rounds} round(s)"
        + (" (--quick: the figures mean nothing)" if arguments.quick else "")
    )
    print(f"sizes: {sizes}")
    print(_servers.versions())
    for name, root in roots.items():
        print(f"{name}: {connection_rate.serverSource(root)}")
    if arguments.server_args:
        print(f"our server's extra options: {shlex.join(arguments.server_args)}")
    if BASE in roots and arguments.base_args:
        print(f"the baseline's extra options: {shlex.join(arguments.base_args)}")
    waiting = connection_rate.timeWaitSockets()
    if waiting > 5000:
        notes.append(
            f"{waiting} TCP sockets in TIME_WAIT at the start: Dante may run "
            "out of local ports (CONNECT reply 05 03); wait a minute between runs"
        )
    for note in notes:
        print(f"note: {note}")
    sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="compare-bench-") as temporary:
        with ExitStack() as stack:
            _tcpEcho, tcpEchoPort = stack.enter_context(connection_rate.echoServer())
            udpEchoPort = stack.enter_context(udp_throughput.echoServer())
            context = Context(sizes, tcpEchoPort, udpEchoPort, arguments.timeout)
            stack.enter_context(
                _startAll(
                    run,
                    Path(temporary),
                    roots,
                    {OURS: arguments.server_args, BASE: arguments.base_args},
                    sizes.warmup,
                    lambda: context,
                )
            )
            run.measure(context)
    run.seconds = time.monotonic() - began
    report(run)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(run.json(), indent=2) + "\n")
        print(f"raw results: {arguments.json}")
    if missing:
        print("FAILED: CI=true, and a peer is not installed")
    return 1 if run.failed or missing else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (
        subprocess.SubprocessError,
        RuntimeError,
        udp_throughput.MeasurementError,
    ) as e:
        # An echo server did not start.
        print(f"FAILED: {e}")
        sys.exit(1)
