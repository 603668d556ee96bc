"""
Connection rate: the per-connection cost of SOCKS5 proxies, each measured
in the same run, interleaved round by round.

One measurement makes a fixed number of short connections (C{--connections},
2000 by default), C{--concurrency} of them (50) in flight at a time.  Each
one, through a proxy:

  1. TCP connect to the proxy;
  2. method selection C{05 01 00} (no authentication), reply C{05 00};
  3. C{CONNECT} to the loopback echo server, reply C{05 00 ...};
  4. 64 bytes sent and the same 64 bytes read back;
  5. close.

The same client also connects straight to the echo server (steps 1, 4 and
5; the C{direct} row), and a connection's added latency through a proxy is
its latency percentile minus the direct one's.

The parties are separate processes: the echo server is a small C{selectors}
server in a child Python process (so its CPU is not counted against any
proxy), the client is this process, a single-threaded non-blocking
C{selectors} (epoll) loop, and each proxy is its own process:

  - C{socks-twisted}: this repository's server, as an operator runs it,
    C{twistd -n --pidfile= socks --port tcp:0:interface=127.0.0.1}, run
    with this interpreter from the repository root, or from
    C{--server-root} (an older checkout, say) with C{PYTHONPATH} pointing
    there; the port is read from its log line C{starting on N};
  - C{socks-twisted-baseline}: the same from C{--baseline-root}, when given;
  - C{microsocks} and C{dante} (C{danted}), when installed.

The proxy's CPU time is user + system time from C{/proc/PID/stat}, summed
over the process and its descendants, read just before the first connect
and just after the last close; it is reported per connection and as a share
of one core over the measurement's wall-clock time.  The client's own CPU
time is reported too: when the proxy is well below one core and the client
near one, the client (or the machine) was the bottleneck, and the table
says so.

Everything listens and connects on 127.0.0.1 only.  Every measurement stops
after its fixed number of connections or after C{--timeout} seconds,
whichever comes first; connections still open then count as failed.  Every
process started here is stopped at the end, and the exit status is 1 if any
connection failed.

Run C{python bench/connection_rate.py --help} for the options; see
C{bench/README.rst}.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy checks this file as the module bench.connection_rate
    from bench import _measure, _servers
else:  # run as bench/connection_rate.py, with bench/ on sys.path
    import _measure
    import _servers

LOOPBACK = _servers.LOOPBACK
CPUTimes = _measure.CPUTimes
treeCPU = _measure.treeCPU
findProgram = _servers.findProgram

PEERS = ("socks-twisted", "microsocks", "dante")
BASELINE = "socks-twisted-baseline"
PAYLOAD = bytes(range(64))

#: Program text of the echo server: a non-blocking selectors loop that
#: prints its port, then echoes every connection until end-of-file, until
#: its standard input closes.
ECHO_MAIN = r"""
import selectors, socket, sys
selector = selectors.DefaultSelector()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
listener.setblocking(False)
selector.register(listener, selectors.EVENT_READ, None)
selector.register(sys.stdin, selectors.EVENT_READ, "stop")
print(listener.getsockname()[1], flush=True)
running = True
while running:
    for key, _ in selector.select():
        if key.data is None:
            for _ in range(64):
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    break
                connection.setblocking(False)
                selector.register(connection, selectors.EVENT_READ, "echo")
        elif key.data == "stop":
            running = False
        else:
            connection = key.fileobj
            try:
                data = connection.recv(65536)
                if data:
                    connection.sendall(data)
                    continue
            except OSError:
                pass
            selector.unregister(connection)
            connection.close()
"""


@contextmanager
def echoServer() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """
    Run the TCP echo server in a child process; yield it and its port.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", ECHO_MAIN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the echo server did not start: {line!r}")
        yield process, int(line)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            _servers.stopProcess(process)


# The client.


_CONNECTING, _METHOD, _REPLY, _ECHO = range(4)


@dataclass
class _Connection:
    sock: socket.socket
    started: float
    state: int
    data: bytes = b""


@dataclass
class RunResult:
    """
    One measurement: its connections' latencies in seconds, its failures,
    its wall-clock time and the CPU times used meanwhile.
    """

    latencies: list[float]
    failures: int
    errors: list[str]
    seconds: float
    proxyCPU: CPUTimes | None
    clientCPU: CPUTimes


def _clientCPU() -> CPUTimes:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CPUTimes(usage.ru_utime, usage.ru_stime)


def runConnections(
    proxyPort: int | None,
    echoPort: int,
    count: int,
    concurrency: int,
    timeout: float,
    proxyPid: int | None = None,
) -> RunResult:
    """
    Make C{count} connections to the echo server, through the SOCKS5 proxy on
    C{proxyPort} or straight to it if C{None}, C{concurrency} at a time.

    A single non-blocking loop drives them all; it stops once C{count}
    connections ended or C{timeout} seconds passed (those still open then
    count as failed).
    """
    selector = selectors.DefaultSelector()
    request = (
        bytes.fromhex("05 01 00 01")
        + socket.inet_aton(LOOPBACK)
        + struct.pack("!H", echoPort)
    )
    target = (LOOPBACK, echoPort if proxyPort is None else proxyPort)
    latencies: list[float] = []
    errors: list[str] = []
    failures = 0
    started = 0
    open_: dict[int, _Connection] = {}

    def fail(connection: _Connection, why: str) -> None:
        nonlocal failures
        failures += 1
        if len(errors) < 5:
            errors.append(why)
        finish(connection)

    def finish(connection: _Connection) -> None:
        selector.unregister(connection.sock)
        del open_[connection.sock.fileno()]
        connection.sock.close()

    def start() -> None:
        nonlocal started
        started += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(sock, time.perf_counter(), _CONNECTING)
        open_[sock.fileno()] = connection
        code = sock.connect_ex(target)
        if code not in (0, errno.EINPROGRESS):
            selector.register(sock, selectors.EVENT_WRITE, connection)
            fail(connection, f"connect: {os.strerror(code)}")
            return
        selector.register(sock, selectors.EVENT_WRITE, connection)

    def send(connection: _Connection, data: bytes) -> bool:
        # A few bytes on a fresh loopback connection always fit the buffer.
        if connection.sock.send(data) != len(data):
            fail(connection, "short send")
            return False
        return True

    def step(connection: _Connection) -> None:
        sock = connection.sock
        if connection.state == _CONNECTING:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                fail(connection, f"connect: {os.strerror(code)}")
                return
            if proxyPort is None:
                connection.state = _ECHO
                if not send(connection, PAYLOAD):
                    return
            else:
                connection.state = _METHOD
                if not send(connection, b"\x05\x01\x00"):
                    return
            selector.modify(sock, selectors.EVENT_READ, connection)
            return
        data = sock.recv(4096)
        if not data:
            fail(connection, f"closed by the peer in state {connection.state}")
            return
        connection.data += data
        buffered = connection.data
        if connection.state == _METHOD:
            if len(buffered) < 2:
                return
            if buffered != b"\x05\x00":
                fail(connection, f"method selection {buffered.hex()}")
                return
            connection.state, connection.data = _REPLY, b""
            send(connection, request)
        elif connection.state == _REPLY:
            if len(buffered) < 5:
                return
            if buffered[:2] != b"\x05\x00":
                fail(connection, f"CONNECT reply {buffered.hex()}")
                return
            kind = buffered[3]
            needed = {1: 10, 4: 22}.get(kind, 7 + buffered[4])
            if len(buffered) < needed:
                return
            if len(buffered) > needed:
                fail(connection, "bytes after the CONNECT reply")
                return
            connection.state, connection.data = _ECHO, b""
            send(connection, PAYLOAD)
        else:
            if len(buffered) < len(PAYLOAD):
                return
            if buffered != PAYLOAD:
                fail(connection, "the echo differs")
                return
            latencies.append(time.perf_counter() - connection.started)
            finish(connection)

    cpuBefore = treeCPU(proxyPid) if proxyPid is not None else None
    clientBefore = _clientCPU()
    began = time.perf_counter()
    deadline = began + timeout
    try:
        while started < count and len(open_) < concurrency:
            start()
        while open_ or started < count:
            now = time.perf_counter()
            if now > deadline:
                break
            for key, _ in selector.select(min(1.0, deadline - now)):
                connection = key.data
                try:
                    step(connection)
                except OSError as e:
                    fail(connection, f"{type(e).__name__}: {e}")
            while started < count and len(open_) < concurrency:
                start()
    finally:
        ended = time.perf_counter()
        for connection in list(open_.values()):
            fail(connection, f"still open after {timeout:g} s")
        selector.close()
    clientUsed = _clientCPU() - clientBefore
    cpuUsed = None
    if proxyPid is not None and cpuBefore is not None:
        cpuUsed = treeCPU(proxyPid) - cpuBefore
    failures += count - started
    return RunResult(latencies, failures, errors, ended - began, cpuUsed, clientUsed)


def timeWaitSockets() -> int:
    """
    The number of IPv4 TCP sockets in TIME_WAIT on this machine.
    """
    try:
        with open("/proc/net/tcp", "rb") as f:
            return sum(1 for line in f if line.split()[3:4] == [b"06"])
    except OSError:
        return 0


# The proxies.


@dataclass
class Proxy:
    name: str
    pid: int
    port: int


def serverSource(root: Path) -> str:
    """
    Where our server's package is imported from when run from C{root}.
    """
    _, env = _servers.ourServerCommand(root)
    result = subprocess.run(
        [sys.executable, "-c", "import socks_twisted; print(socks_twisted.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip() or result.stderr.strip()[-200:]


@contextmanager
def startProxy(name: str, directory: Path, root: Path) -> Iterator[Proxy]:
    """
    Start the proxy called C{name} on loopback (our server from the checkout
    at C{root}), and stop it afterwards.
    """
    with _servers.startProxy(name, directory, root) as proxy:
        yield Proxy(name, proxy.process.pid, proxy.port)


# The run.


@dataclass
class Measurement:
    name: str
    results: list[RunResult] = field(default_factory=list)
    error: str | None = None

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.results)

    def rate(self) -> float:
        return statistics.median(len(r.latencies) / r.seconds for r in self.results)

    def percentile(self, fraction: float) -> float:
        # Per round, then the median over the rounds.
        values = []
        for r in self.results:
            ordered = sorted(r.latencies)
            if ordered:
                values.append(
                    ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
                )
        return statistics.median(values) if values else float("nan")

    def cpuPerConnection(self) -> float | None:
        """
        The proxy's median CPU microseconds per connection.
        """
        values = [
            r.proxyCPU.total / len(r.latencies) * 1e6
            for r in self.results
            if r.proxyCPU is not None and r.latencies
        ]
        return statistics.median(values) if values else None

    def cpuShare(self, which: str) -> float:
        """
        The median share of one core used by the proxy or the client.
        """
        values = []
        for r in self.results:
            used = r.proxyCPU if which == "proxy" else r.clientCPU
            if used is not None and r.seconds > 0:
                values.append(used.total / r.seconds)
        return statistics.median(values) if values else float("nan")


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Measure short SOCKS5 connections per second and the proxy's CPU "
            "per connection, direct and through SOCKS5 proxies, and print "
            "the ratios."
        )
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=2000,
        help="connections per measurement (default: 2000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="connections in flight at a time (default: 50)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="times to repeat every measurement, reporting medians (default: 5)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="connections made, not counted, through each proxy once it "
        "started (default: 200)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=(
            "comma-separated proxies to measure, from "
            f"{', '.join(PEERS)} (default: all; missing ones are skipped)"
        ),
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        default=_servers.REPOSITORY,
        help="checkout that socks-twisted runs from (default: this one)",
    )
    parser.add_argument(
        "--baseline-root",
        type=Path,
        default=None,
        help=f"also measure the server of this checkout, as {BASELINE}",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds after which one measurement is cut off (default: 60)",
    )
    arguments = parser.parse_args(argv)
    arguments.peers = [p.strip() for p in arguments.peers.split(",") if p.strip()]
    unknown = set(arguments.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    for name in ("connections", "concurrency", "rounds"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if arguments.warmup < 0:
        parser.error("--warmup must not be negative")
    arguments.server_root = arguments.server_root.resolve()
    if arguments.baseline_root is not None:
        arguments.baseline_root = arguments.baseline_root.resolve()
    return arguments


def main(argv: Sequence[str]) -> int:
    arguments = parseArguments(argv)
    count, concurrency = arguments.connections, arguments.concurrency
    timeout = arguments.timeout
    peers: list[str] = []
    notes: list[str] = []
    roots = {"socks-twisted": arguments.server_root}
    for name in arguments.peers:
        program = {"microsocks": "microsocks", "dante": "danted"}.get(name)
        if program is not None and findProgram(program) is None:
            notes.append(f"{name}: skipped, {program} is not installed")
        else:
            peers.append(name)
    if arguments.baseline_root is not None:
        peers.insert(
            peers.index("socks-twisted") + 1 if "socks-twisted" in peers else 0,
            BASELINE,
        )
        roots[BASELINE] = arguments.baseline_root

    print(
        f"connection rate: {count} connections per measurement, {concurrency} "
        f"in flight, each SOCKS5 no-auth + CONNECT to a {LOOPBACK} echo server "
        f"+ {len(PAYLOAD)} bytes echoed + close; {arguments.rounds} round(s), "
        f"timeout {timeout:g} s per measurement"
    )
    print(_servers.versions())
    for name, root in roots.items():
        if name in peers:
            print(f"{name}: {serverSource(root)}")
    waiting = timeWaitSockets()
    if waiting > 5000:
        notes.append(
            f"{waiting} TCP sockets in TIME_WAIT: a proxy that binds its "
            "outgoing socket before connecting (Dante) may run out of ports "
            "and fail with CONNECT reply 05 03; wait a minute between runs"
        )
    for note in notes:
        print(note)
    sys.stdout.flush()

    results = {name: Measurement(name) for name in ["direct", *peers]}
    with tempfile.TemporaryDirectory(prefix="connection-bench-") as temporary:
        directory = Path(temporary)
        with ExitStack() as stack:
            _echo, echoPort = stack.enter_context(echoServer())
            proxies: dict[str, Proxy] = {}
            for name in peers:
                try:
                    proxy = stack.enter_context(
                        startProxy(
                            name, directory, roots.get(name, _servers.REPOSITORY)
                        )
                    )
                except (RuntimeError, OSError) as e:
                    results[name].error = str(e)
                    continue
                proxies[name] = proxy
                if arguments.warmup:
                    warm = runConnections(
                        proxy.port, echoPort, arguments.warmup, concurrency, timeout
                    )
                    if warm.failures:
                        why = "; ".join(warm.errors)
                        results[name].error = f"warm-up: {warm.failures} failed: {why}"
            if arguments.warmup:
                runConnections(None, echoPort, arguments.warmup, concurrency, timeout)
            for _ in range(arguments.rounds):
                results["direct"].results.append(
                    runConnections(None, echoPort, count, concurrency, timeout)
                )
                for name, proxy in proxies.items():
                    if results[name].error:
                        continue
                    results[name].results.append(
                        runConnections(
                            proxy.port, echoPort, count, concurrency, timeout, proxy.pid
                        )
                    )

    report(results, count)
    failed = sum(m.failures for m in results.values())
    errored = [m for m in results.values() if m.error]
    return 1 if failed or errored else 0


def report(results: dict[str, Measurement], count: int) -> None:
    """
    Print the table, the ratios and the failures.
    """
    direct = results["direct"]
    directOK = bool(direct.results) and not direct.error
    p50 = direct.percentile(0.50) if directOK else float("nan")
    p99 = direct.percentile(0.99) if directOK else float("nan")
    print()
    print(
        f"{'peer':<23} {'conn/s':>7} {'proxy CPU us/conn':>18}"
        f" {'proxy core':>10} {'client core':>11}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'+p50 ms':>8} {'+p99 ms':>8} {'failed':>6}"
    )
    bottleneck: list[str] = []
    for m in results.values():
        if m.error or not m.results:
            print(f"{m.name:<23} FAILED: {m.error}")
            continue
        perConnection = m.cpuPerConnection()
        cpuText = (
            f"{perConnection:18.0f}" if perConnection is not None else f"{'-':>18}"
        )
        proxyShare = m.cpuShare("proxy")
        share = f"{proxyShare:10.0%}" if m.name != "direct" else f"{'-':>10}"
        mine50, mine99 = m.percentile(0.50), m.percentile(0.99)
        if m.name == "direct":
            added = f"{'-':>8} {'-':>8}"
        else:
            added = f"{(mine50 - p50) * 1e3:8.2f} {(mine99 - p99) * 1e3:8.2f}"
        print(
            f"{m.name:<23} {m.rate():7.0f} {cpuText} {share}"
            f" {m.cpuShare('client'):11.0%} {mine50 * 1e3:7.2f} {mine99 * 1e3:7.2f}"
            f" {added} {m.failures:6d}"
        )
        if m.name != "direct" and proxyShare < 0.9:
            bottleneck.append(m.name)

    ours = results.get("socks-twisted")
    if ours is not None and not ours.error and ours.results:
        print()
        for name in (BASELINE, "dante", "microsocks"):
            peer = results.get(name)
            if peer is None or peer.error or not peer.results:
                continue
            speed = ours.rate() / peer.rate()
            line = f"socks-twisted / {name}: connections/s {speed:.3f}x"
            oursCPU, peerCPU = ours.cpuPerConnection(), peer.cpuPerConnection()
            if oursCPU is not None and peerCPU:
                line += f", proxy CPU per connection {oursCPU / peerCPU:.2f}x"
            print(line)

    if bottleneck:
        print()
        print(
            f"not CPU-bound (proxy below 90% of a core): {', '.join(bottleneck)}; "
            "for these the client, the echo server or the machine "
            f"({os.cpu_count()} CPUs) limited the rate, so compare their CPU "
            "per connection rather than their connections/s"
        )
    for m in results.values():
        if m.failures:
            errors = sorted({e for r in m.results for e in r.errors})
            print(f"{m.name}: {m.failures} connection(s) failed: {'; '.join(errors)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
