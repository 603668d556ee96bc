"""
UDP relay cost: datagrams per second and the server's CPU time per echoed
datagram, for this checkout's server, optionally an older checkout's
(C{--baseline-root}), and Dante (C{danted}, when installed).

The pieces and the measurement are those of C{udp_throughput.py} (an echo
server in a child process, this process as a raw-socket SOCKS5 client
keeping C{--window} datagrams outstanding through one association); every
server is started once and measured in turn, round by round, so that a
shared machine's noise falls on all of them alike.  The CPU figure is the
server's process tree's user + system time from C{/proc} over the
measurement, divided by the echoes received (each echo is two datagrams
through the relay: to the echo server and back).

Run from the repository root with the development virtualenv's interpreter::

    python bench/udp_cpu.py --baseline-root /path/to/old/checkout

Loopback only; every process started is stopped; bounded by C{--count} and
C{--seconds} per measurement.  Needs Linux.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy checks this file as the module bench.udp_cpu
    from bench import _servers, relay_throughput, udp_throughput
else:  # run as bench/udp_cpu.py, with bench/ on sys.path
    import _servers
    import relay_throughput
    import udp_throughput

LOOPBACK = _servers.LOOPBACK


def _danteConfig(port: int, logPath: Path) -> str:
    users = "user.privileged: root\nuser.unprivileged: nobody\n"
    return f"""\
logoutput: {logPath}
internal: {LOOPBACK} port = {port}
external: {LOOPBACK}
clientmethod: none
socksmethod: none
{users if os.geteuid() == 0 else ""}
client pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    log: error
}}
socks pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: udpassociate udpreply
    log: error
}}
"""


@dataclass
class Server:
    """
    A running server and its measurements.
    """

    name: str
    pid: int
    port: int
    rates: list[float] = field(default_factory=list)
    cpuPerEcho: list[float] = field(default_factory=list)
    echoes: int = 0
    lost: int = 0
    error: str = ""


@contextmanager
def ourServer(name: str, root: Path, directory: Path) -> Iterator[tuple[str, int, int]]:
    """
    Our server from the checkout at C{root} (its package and twistd plugin
    first on C{PYTHONPATH}, twistd run from there).
    """
    logPath = directory / f"{name}.log"
    argv, env = _servers.ourServerCommand()
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])
    with _servers.serving(
        argv,
        logPath,
        lambda: _servers.startedPort(logPath),
        name,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
    ) as (process, port):
        yield name, process.pid, port


@contextmanager
def dante(directory: Path) -> Iterator[tuple[str, int, int]]:
    """
    Dante on a free loopback port, allowing UDP between loopback addresses.
    """
    program = relay_throughput.findProgram("danted")
    assert program is not None
    port = relay_throughput.freePort()
    config = directory / "danted.conf"
    config.write_text(_danteConfig(port, directory / "danted.log"))
    argv = [program, "-f", str(config), "-N", "1", "-p", str(directory / "d.pid")]
    with _servers.serving(
        argv,
        directory / "dante.out",
        lambda: relay_throughput._accepts(port),
        "dante",
    ) as (process, listening):
        yield "dante", process.pid, listening


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=50_000, help="echoes per measurement"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="time limit per measurement"
    )
    parser.add_argument(
        "--window", type=int, default=32, help="datagrams outstanding at once"
    )
    parser.add_argument(
        "--size", type=int, default=512, help="payload bytes per datagram"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements per server, interleaved"
    )
    parser.add_argument(
        "--loss-wait",
        type=float,
        default=0.2,
        help="seconds without an echo after which the outstanding are lost",
    )
    parser.add_argument(
        "--baseline-root",
        type=Path,
        default=None,
        help="also measure the server of the checkout at this path",
    )
    parser.add_argument("--no-dante", action="store_true", help="leave Dante out")
    arguments = parser.parse_args(argv)
    if not 8 <= arguments.size <= 65000 or min(arguments.count, arguments.rounds) < 1:
        parser.error("--size 8-65000, --count and --rounds at least 1")
    return arguments


def main(argv: Sequence[str]) -> int:
    """
    Measure every server, round by round, and print the table.
    """
    arguments = parseArguments(argv)
    print(
        f"UDP echo over {LOOPBACK} through each server: {arguments.size}-byte "
        f"payloads, window {arguments.window}, at most {arguments.count} "
        f"datagrams or {arguments.seconds:g} s per measurement, "
        f"{arguments.rounds} round(s)"
    )
    print(_servers.versions())
    with (
        tempfile.TemporaryDirectory(prefix="udp-cpu-") as temporary,
        ExitStack() as stack,
    ):
        directory = Path(temporary)
        echoPort = stack.enter_context(udp_throughput.echoServer())
        starts = [ourServer("socks-twisted", _servers.REPOSITORY, directory)]
        if arguments.baseline_root is not None:
            root = arguments.baseline_root.resolve()
            starts.append(ourServer("baseline", root, directory))
        if not arguments.no_dante:
            if relay_throughput.findProgram("danted") is None:
                print("dante: danted not installed, skipped")
            else:
                starts.append(dante(directory))
        servers = [Server(*stack.enter_context(start)) for start in starts]
        sys.stdout.flush()
        for _ in range(arguments.rounds):
            for server in servers:
                if server.error:
                    continue
                before = relay_throughput.treeCPU(server.pid)
                try:
                    result = udp_throughput.measureRelayed(
                        server.port,
                        echoPort,
                        arguments.size,
                        arguments.window,
                        arguments.count,
                        arguments.seconds,
                        arguments.loss_wait,
                    )
                except (udp_throughput.MeasurementError, OSError) as e:
                    server.error = str(e)
                    continue
                cpu = (relay_throughput.treeCPU(server.pid) - before).total
                if result.received == 0:
                    server.error = "no echo came back"
                    continue
                server.rates.append(result.rate)
                server.cpuPerEcho.append(cpu / result.received * 1e6)
                server.echoes += result.received
                server.lost += result.lost
    report(servers)
    return 1 if any(server.error for server in servers) else 0


def report(servers: list[Server]) -> None:
    """
    One line per server (medians over the rounds), then ratios to the first.
    """
    print()
    print(
        f"{'server':<14} {'echoes/s':>9} {'CPU us/echo':>12} "
        f"{'per round (us/echo)':<28} {'echoes':>8} {'lost':>6}"
    )
    for server in servers:
        if server.error:
            print(f"{server.name:<14} FAILED: {server.error}")
            continue
        rounds = " ".join(f"{c:.1f}" for c in server.cpuPerEcho)
        print(
            f"{server.name:<14} {statistics.median(server.rates):9.0f}"
            f" {statistics.median(server.cpuPerEcho):12.1f} {rounds:<28}"
            f" {server.echoes:8d} {server.lost:6d}"
        )
    ours = servers[0]
    for other in servers[1:]:
        if ours.error or other.error:
            continue
        rate = statistics.median(ours.rates) / statistics.median(other.rates)
        cpu = statistics.median(ours.cpuPerEcho) / statistics.median(other.cpuPerEcho)
        print(
            f"{ours.name} / {other.name}: echoes/s {rate:.3f}x, CPU per echo {cpu:.3f}x"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
