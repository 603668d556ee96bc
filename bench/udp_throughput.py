"""
UDP relay throughput: datagrams per second to a UDP echo server over
loopback, sent directly and through this repository's SOCKS5 UDP relay,
measured in the same run and printed as a ratio.

A machine's absolute figures say little, so the direct path is measured
next to the relayed one, interleaved round by round, and the report gives
medians and their ratio.

The pieces, each its own process so that none competes with another for a
Python interpreter lock:

  - the echo server: a blocking UDP socket in a child Python process that
    sends every datagram back to its source;
  - our server, started as an operator starts it, C{twistd -n --pidfile=
    socks --port tcp:0:interface=127.0.0.1}, run with this interpreter from
    the repository root (so the checkout's plugin is the C{socks} twistd
    runs); its port is read from the log line C{starting on N};
  - the client, this process: a raw-socket SOCKS5 client (method
    selection, UDP ASSOCIATE with DST 0.0.0.0:0, then datagrams with the
    RFC 1928 section 7 header), or a plain UDP socket for the direct path.

The client keeps a window of datagrams outstanding: it sends C{--window}
datagrams, then one more for each echo received.  Each datagram carries a
sequence number; an echo whose number is not outstanding is ignored, and
when nothing arrives for C{--loss-wait} seconds every outstanding datagram
is counted as lost and the window refilled.  A measurement ends after
C{--count} datagrams were sent or C{--seconds} seconds, whichever comes
first; the figure is echoes received per second of that time.

Everything listens and connects on 127.0.0.1 only, every measurement is
bounded in count and time, and the processes started here are stopped at
the end (by the PIDs we hold).

Run C{python bench/udp_throughput.py --help} for the options; see
C{bench/README.rst}.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy checks this file as the module bench.udp_throughput
    from bench import _servers
else:  # run as bench/udp_throughput.py, with bench/ on sys.path
    import _servers

LOOPBACK = _servers.LOOPBACK

#: Program text of the echo server: prints its port, then echoes until
#: SIGTERM.
ECHO_MAIN = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, source = s.recvfrom(65535)
    s.sendto(data, source)
"""

_SEQUENCE = struct.Struct("!Q")


class MeasurementError(Exception):
    """
    A measurement could not be made.
    """


@dataclass
class Result:
    """
    One measurement.
    """

    sent: int
    received: int
    lost: int
    seconds: float

    @property
    def rate(self) -> float:
        """
        Echoes received per second.
        """
        return self.received / self.seconds if self.seconds else 0.0


@dataclass
class Route:
    """
    One way to reach the echo server (direct, or through our relay),
    measured over several rounds.
    """

    name: str
    results: list[Result] = field(default_factory=list)
    error: str | None = None

    def medianRate(self) -> float:
        """
        The median of the rounds' rates.
        """
        return statistics.median(r.rate for r in self.results)


# Processes


@contextmanager
def echoServer() -> Iterator[int]:
    """
    Run the UDP echo server in a child process; yield its port.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", ECHO_MAIN],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise MeasurementError(f"the echo server did not start: {line!r}")
        yield int(line)
    finally:
        _servers.stopProcess(process)


@contextmanager
def ourServer(directory: Path, timeout: float = 20.0) -> Iterator[int]:
    """
    Run our server with twistd from the repository root; yield its port.
    """
    logPath = directory / "socks-twisted.log"
    argv, env = _servers.ourServerCommand()
    with _servers.serving(
        argv,
        logPath,
        lambda: _servers.startedPort(logPath),
        "our server",
        MeasurementError,
        cwd=_servers.REPOSITORY,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    ) as (_, port):
        yield port


# SOCKS5 UDP ASSOCIATE by hand


def _recvExactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise MeasurementError("the proxy closed the control connection")
        data += chunk
    return data


def associate(proxyPort: int, timeout: float) -> tuple[socket.socket, tuple[str, int]]:
    """
    Open a UDP association through the SOCKS5 proxy on C{proxyPort}.

    @return: The control connection (keep it open) and the relay address.
    """
    control = socket.create_connection((LOOPBACK, proxyPort), timeout=timeout)
    try:
        control.sendall(b"\x05\x01\x00")
        if _recvExactly(control, 2) != b"\x05\x00":
            raise MeasurementError("the proxy refused method 0")
        control.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        version, code, _, atyp = _recvExactly(control, 4)
        if version != 5 or code != 0:
            raise MeasurementError(f"UDP ASSOCIATE refused with reply {code}")
        if atyp == 1:
            host = str(ipaddress.IPv4Address(_recvExactly(control, 4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(_recvExactly(control, 16)))
        else:
            raise MeasurementError(f"relay address of type {atyp}")
        (port,) = struct.unpack("!H", _recvExactly(control, 2))
        if ipaddress.ip_address(host).is_unspecified:
            host = LOOPBACK
        return control, (host, port)
    except BaseException:
        control.close()
        raise


# The measurement


def measure(
    send: Callable[[bytes], None],
    receive: Callable[[], bytes | None],
    payloadSize: int,
    window: int,
    count: int,
    seconds: float,
) -> Result:
    """
    Keep C{window} datagrams outstanding until C{count} were sent or
    C{seconds} passed, then collect the last echoes.

    @param send: Sends one payload.
    @param receive: Returns one echoed payload, or C{None} after the loss
        wait.
    """
    padding = b"\x00" * max(0, payloadSize - _SEQUENCE.size)
    outstanding: set[int] = set()
    sent = received = lost = 0

    def sendNext() -> None:
        nonlocal sent
        outstanding.add(sent)
        send(_SEQUENCE.pack(sent) + padding)
        sent += 1

    start = time.monotonic()
    deadline = start + seconds
    while len(outstanding) < window and sent < count:
        sendNext()
    while outstanding:
        echo = receive()
        if echo is None:
            lost += len(outstanding)
            outstanding.clear()
        else:
            (number,) = _SEQUENCE.unpack_from(echo)
            if number not in outstanding:
                continue
            outstanding.discard(number)
            received += 1
        if time.monotonic() < deadline:
            while len(outstanding) < window and sent < count:
                sendNext()
    return Result(sent, received, lost, time.monotonic() - start)


def measureDirect(
    echoPort: int,
    payloadSize: int,
    window: int,
    count: int,
    seconds: float,
    lossWait: float,
) -> Result:
    """
    Datagrams straight to the echo server.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((LOOPBACK, 0))
        sock.connect((LOOPBACK, echoPort))
        sock.settimeout(lossWait)

        def send(payload: bytes) -> None:
            sock.send(payload)

        def receive() -> bytes | None:
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None

        return measure(send, receive, payloadSize, window, count, seconds)


def measureRelayed(
    proxyPort: int,
    echoPort: int,
    payloadSize: int,
    window: int,
    count: int,
    seconds: float,
    lossWait: float,
) -> Result:
    """
    Datagrams through a new association of the SOCKS5 proxy on
    C{proxyPort}; every echo is checked to name the echo server.
    """
    control, relay = associate(proxyPort, timeout=10)
    header = b"\x00\x00\x00\x01" + socket.inet_aton(LOOPBACK)
    header += struct.pack("!H", echoPort)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind((LOOPBACK, 0))
            sock.connect(relay)
            sock.settimeout(lossWait)

            def send(payload: bytes) -> None:
                sock.send(header + payload)

            def receive() -> bytes | None:
                try:
                    datagram = sock.recv(65535)
                except TimeoutError:
                    return None
                if not datagram.startswith(header):
                    raise MeasurementError(
                        f"an answer through the relay with header {datagram[:10].hex()}"
                    )
                return datagram[len(header) :]

            return measure(send, receive, payloadSize, window, count, seconds)
    finally:
        control.close()


# The run


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line.
    """
    parser = argparse.ArgumentParser(
        description="UDP datagrams per second through our SOCKS5 relay vs direct."
    )
    parser.add_argument(
        "--count", type=int, default=100_000, help="datagrams per measurement"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="time limit per measurement"
    )
    parser.add_argument(
        "--window", type=int, default=32, help="datagrams outstanding at once"
    )
    parser.add_argument(
        "--size", type=int, default=512, help="payload bytes per datagram (>= 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements per route, interleaved"
    )
    parser.add_argument(
        "--loss-wait",
        type=float,
        default=0.2,
        help="seconds without an echo after which the outstanding are lost",
    )
    arguments = parser.parse_args(argv)
    if arguments.size < _SEQUENCE.size or arguments.size > 65000:
        parser.error("--size must be between 8 and 65000")
    for name in ("count", "window", "rounds"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if arguments.seconds <= 0 or arguments.loss_wait <= 0:
        parser.error("--seconds and --loss-wait must be positive")
    return arguments


def main(argv: Sequence[str]) -> int:
    """
    Measure both routes, print the table and the ratio.
    """
    arguments = parseArguments(argv)
    size, window, count = arguments.size, arguments.window, arguments.count
    seconds, lossWait = arguments.seconds, arguments.loss_wait
    print(
        f"UDP echo over {LOOPBACK}: {size}-byte payloads, window {window}, "
        f"at most {count} datagrams or {seconds:g} s per measurement, "
        f"{arguments.rounds} round(s)"
    )
    print(_servers.versions())
    sys.stdout.flush()
    routes = {name: Route(name) for name in ("direct", "socks-twisted")}
    with tempfile.TemporaryDirectory(prefix="udp-bench-") as temporary:
        try:
            with echoServer() as echoPort, ourServer(Path(temporary)) as proxyPort:
                for _ in range(arguments.rounds):
                    for route in routes.values():
                        if route.error:
                            continue
                        try:
                            if route.name == "direct":
                                result = measureDirect(
                                    echoPort, size, window, count, seconds, lossWait
                                )
                            else:
                                result = measureRelayed(
                                    proxyPort,
                                    echoPort,
                                    size,
                                    window,
                                    count,
                                    seconds,
                                    lossWait,
                                )
                        except (MeasurementError, OSError) as e:
                            route.error = str(e)
                            continue
                        if result.received == 0:
                            route.error = "no echo came back"
                        route.results.append(result)
        except MeasurementError as e:
            print(f"FAILED: {e}")
            return 1
    report(routes)
    return 1 if any(route.error for route in routes.values()) else 0


def report(routes: dict[str, Route]) -> None:
    """
    Print one line per route (the median rate over the rounds, and totals
    over all rounds) and the ratio.
    """
    print()
    print(
        f"{'route':<14} {'datagrams/s':>12} {'vs direct':>10}"
        f" {'sent':>9} {'echoed':>9} {'lost':>6} {'seconds':>8}"
    )
    direct = routes["direct"]
    for route in routes.values():
        if route.error or not route.results:
            print(f"{route.name:<14} FAILED: {route.error}")
            continue
        ratio = (
            f"{route.medianRate() / direct.medianRate():10.3f}"
            if direct.results and not direct.error
            else f"{'-':>10}"
        )
        print(
            f"{route.name:<14} {route.medianRate():12.0f} {ratio}"
            f" {sum(r.sent for r in route.results):9d}"
            f" {sum(r.received for r in route.results):9d}"
            f" {sum(r.lost for r in route.results):6d}"
            f" {sum(r.seconds for r in route.results):8.2f}"
        )
    ours = routes["socks-twisted"]
    if ours.results and direct.results and not ours.error and not direct.error:
        print(
            f"socks-twisted / direct: {ours.medianRate() / direct.medianRate():.3f}x "
            f"datagrams per second (medians of {len(ours.results)} round(s) each)"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
