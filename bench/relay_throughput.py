"""
Relay throughput: one large one-way transfer over loopback, sent directly
and through SOCKS5 proxies, all measured in the same run.

A machine's absolute figures say little (loopback speed depends on the CPU,
the kernel and whatever else runs), so this prints each proxy's figures
next to a direct transfer measured minutes apart at most, and as ratios.

The sender and the receiver are plain blocking sockets in two threads of
this process (C{sendall} of 1 MiB buffers, C{recv_into} a 1 MiB buffer);
they release the GIL while in the kernel, so a proxy in between is the
bottleneck.  Each proxy runs as its own process:

  - C{socks-twisted}: this repository's server, as an operator runs it,
    C{twistd -n --pidfile= socks --port tcp:0:interface=127.0.0.1}, run
    with this interpreter from the repository root; the port is read from
    its log line C{starting on N};
  - C{microsocks} and C{dante} (C{danted}), when installed.

The server's CPU time is user + system time from C{/proc/PID/stat}, summed
over the process and its descendants (Dante does its relaying in child
processes), read just before and just after the transfer.

Everything listens and connects on 127.0.0.1 only, and every transfer is
bounded in time (C{--timeout}, 120 s by default): a stalled one is cut off
and reported, and every server started here is stopped at the end.

Run C{python bench/relay_throughput.py --help} for the options; see
C{bench/README.rst}.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy checks this file as the module bench.relay_throughput
    from bench import _measure, _servers
else:  # run as bench/relay_throughput.py, with bench/ on sys.path
    import _measure
    import _servers

LOOPBACK = _servers.LOOPBACK
CPUTimes = _measure.CPUTimes
treeCPU = _measure.treeCPU
processTree = _measure.processTree
findProgram = _servers.findProgram
freePort = _servers.freePort
Proxy = _servers.Proxy

PEERS = ("socks-twisted", "microsocks", "dante")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parseSize(text: str) -> int:
    """
    A byte count such as C{1GiB}, C{512MiB}, C{2GB} or C{1048576}.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r}")
    return size


def formatSize(size: int) -> str:
    """
    C{size} in the largest binary unit that divides it, else in bytes.
    """
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


# One transfer.


class TransferError(Exception):
    """
    A transfer failed or took too long.
    """


def recvExactly(sock: socket.socket, count: int) -> bytes:
    """
    Exactly C{count} bytes from C{sock}.
    """
    data = b""
    while len(data) < count:
        more = sock.recv(count - len(data))
        if not more:
            raise TransferError(f"connection closed after {data.hex()!r}")
        data += more
    return data


def socks5Connect(proxyPort: int, targetPort: int, timeout: float) -> socket.socket:
    """
    A socket connected through the SOCKS5 proxy on C{proxyPort} to
    127.0.0.1:C{targetPort}, with the handshake done: greeting C{05 01 00}
    (no authentication), then CONNECT C{05 01 00 01 7f000001 PORT}.
    """
    sock = socket.create_connection((LOOPBACK, proxyPort), timeout=timeout)
    try:
        sock.sendall(bytes.fromhex("05 01 00"))
        choice = recvExactly(sock, 2)
        if choice != bytes.fromhex("05 00"):
            raise TransferError(f"method selection {choice.hex()}")
        sock.sendall(
            bytes.fromhex("05 01 00 01")
            + socket.inet_aton(LOOPBACK)
            + struct.pack("!H", targetPort)
        )
        head = recvExactly(sock, 4)
        if head[:2] != bytes.fromhex("05 00"):
            raise TransferError(f"CONNECT reply {head.hex()}")
        addressLength = {1: 4, 4: 16}.get(head[3])
        if addressLength is None:
            addressLength = recvExactly(sock, 1)[0]
        recvExactly(sock, addressLength + 2)
    except BaseException:
        sock.close()
        raise
    return sock


Connector = Callable[[int, float], socket.socket]


def directConnect(targetPort: int, timeout: float) -> socket.socket:
    """
    A socket connected straight to 127.0.0.1:C{targetPort}.
    """
    return socket.create_connection((LOOPBACK, targetPort), timeout=timeout)


@dataclass
class _Receiver:
    """
    Reads one socket to end-of-file, in a thread, then closes it.
    """

    sock: socket.socket
    bufferSize: int
    received: int = 0
    finished: float | None = None
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            view = memoryview(bytearray(self.bufferSize))
            received = 0
            while True:
                count = self.sock.recv_into(view)
                if not count:
                    break
                received += count
            self.finished = time.perf_counter()
            self.received = received
            self.sock.close()
        except BaseException as e:
            self.error = e


def transfer(
    connect: Connector,
    size: int,
    bufferSize: int,
    timeout: float,
    cpu: Callable[[], CPUTimes] | None = None,
    upload: bool = True,
) -> tuple[float, CPUTimes | None]:
    """
    Send C{size} bytes one way over a connection made by C{connect} to a
    fresh listener, and time it from the first byte sent to end-of-file at
    the receiving end.

    @param cpu: Reads the CPU time to report the difference of, just before
        the first byte and after the end.
    @param upload: Whether the connecting side sends (the client uploads
        through the proxy), or else the accepted side (it downloads).
    @return: The seconds taken and the CPU time used.
    @raise TransferError: If it failed, lost or gained bytes, or took more
        than C{timeout} seconds.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        listener.settimeout(timeout)
        client = connect(listener.getsockname()[1], timeout)
        try:
            accepted, _ = listener.accept()
        except OSError as e:
            client.close()
            raise TransferError(f"no connection arrived: {e}") from e
    finally:
        listener.close()
    sender, receiving = (client, accepted) if upload else (accepted, client)
    for sock in (client, accepted):
        sock.settimeout(timeout)
    receiver = _Receiver(receiving, bufferSize)

    def cutOff() -> None:
        # Wakes both threads from blocking calls.
        for sock in (client, accepted):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, cutOff)
    watchdog.daemon = True
    payload = memoryview(os.urandom(bufferSize))
    try:
        before = cpu() if cpu else None
        watchdog.start()
        started = time.perf_counter()
        remaining = size
        while remaining:
            count = min(remaining, bufferSize)
            sender.sendall(payload[:count])
            remaining -= count
        sender.shutdown(socket.SHUT_WR)
        receiver.thread.join(timeout)
        # The proxy closes the sending side once the receiver closed its own.
        while sender.recv(65536):
            raise TransferError("the receiver sent bytes back")
        after = cpu() if cpu else None
    except OSError as e:
        raise TransferError(
            f"transfer failed or timed out after {timeout:g} s: {e}"
        ) from e
    finally:
        watchdog.cancel()
        cutOff()
        client.close()
        accepted.close()
    if receiver.error is not None:
        raise TransferError(f"receiver: {receiver.error!r}")
    if receiver.finished is None:
        raise TransferError(f"no end-of-file at the receiver within {timeout:g} s")
    if receiver.received != size:
        raise TransferError(f"{receiver.received} bytes arrived, {size} sent")
    used = after - before if after is not None and before is not None else None
    return receiver.finished - started, used


# The proxies.


def connector(proxy: _servers.Proxy) -> Connector:
    """
    Connects through C{proxy} with L{socks5Connect}.
    """
    return lambda targetPort, timeout: socks5Connect(proxy.port, targetPort, timeout)


def proxyCPU(proxy: _servers.Proxy) -> Callable[[], CPUTimes]:
    """
    Reads the CPU time of C{proxy}'s process tree.
    """
    return lambda: treeCPU(proxy.process.pid)


def startProxy(name: str, directory: Path) -> AbstractContextManager[_servers.Proxy]:
    """
    Start the proxy called C{name} (see L{_servers.startProxy}) on loopback,
    and stop it afterwards.
    """
    return _servers.startProxy(name, directory)


# The run.


@dataclass
class Measurement:
    """
    One peer's transfers.
    """

    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[CPUTimes] = field(default_factory=list)
    error: str | None = None

    def medianSeconds(self) -> float:
        return statistics.median(self.seconds)

    def medianCPU(self) -> CPUTimes | None:
        if not self.cpu:
            return None
        return CPUTimes(
            statistics.median(c.user for c in self.cpu),
            statistics.median(c.system for c in self.cpu),
        )


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time a one-way transfer over loopback, direct and through SOCKS5 "
            "proxies, and print the ratios."
        )
    )
    parser.add_argument(
        "--size",
        type=parseSize,
        default=parseSize("1GiB"),
        help="bytes per transfer, e.g. 1GiB, 256MiB, 2GB (default: 1GiB)",
    )
    parser.add_argument(
        "--buffer",
        type=parseSize,
        default=parseSize("1MiB"),
        help="bytes per send and per receive call (default: 1MiB)",
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
        "--rounds",
        type=int,
        default=1,
        help="times to repeat every measurement, reporting medians (default: 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds after which one transfer is cut off (default: 120)",
    )
    arguments = parser.parse_args(argv)
    arguments.peers = [p.strip() for p in arguments.peers.split(",") if p.strip()]
    unknown = set(arguments.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def main(argv: Sequence[str]) -> int:
    arguments = parseArguments(argv)
    size, bufferSize, timeout = arguments.size, arguments.buffer, arguments.timeout
    peers: list[str] = []
    notes: list[str] = []
    for name in arguments.peers:
        program = {"microsocks": "microsocks", "dante": "danted"}.get(name)
        if program is not None and findProgram(program) is None:
            notes.append(f"{name}: skipped, {program} is not installed")
        else:
            peers.append(name)

    print(
        f"relay throughput: {formatSize(size)} ({size} bytes) one way over "
        f"{LOOPBACK}, {formatSize(bufferSize)} per send/recv, "
        f"{arguments.rounds} round(s), timeout {timeout:g} s per transfer"
    )
    print(_servers.versions())
    for note in notes:
        print(note)
    sys.stdout.flush()

    results = {name: Measurement(name) for name in ["direct", *peers]}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as temporary:
        directory = Path(temporary)
        for _ in range(arguments.rounds):
            try:
                seconds, _cpu = transfer(directConnect, size, bufferSize, timeout)
                results["direct"].seconds.append(seconds)
            except TransferError as e:
                results["direct"].error = str(e)
            for name in peers:
                measurement = results[name]
                if measurement.error:
                    continue
                try:
                    with startProxy(name, directory) as proxy:
                        seconds, used = transfer(
                            connector(proxy), size, bufferSize, timeout, proxyCPU(proxy)
                        )
                except (TransferError, RuntimeError, OSError) as e:
                    measurement.error = str(e)
                    continue
                measurement.seconds.append(seconds)
                if used is not None:
                    measurement.cpu.append(used)

    report(results, size)
    failed = [m for m in results.values() if m.error]
    return 1 if failed else 0


def report(results: dict[str, Measurement], size: int) -> None:
    """
    Print the table and the ratios.
    """
    direct = results["direct"]
    print()
    print(
        f"{'peer':<14} {'seconds':>8} {'GB/s':>7} {'vs direct':>10}"
        f" {'server CPU s (user+sys)':>25} {'CPU s/GB':>9}"
    )
    for measurement in results.values():
        if measurement.error or not measurement.seconds:
            print(f"{measurement.name:<14} FAILED: {measurement.error}")
            continue
        seconds = measurement.medianSeconds()
        rate = size / seconds / 1e9
        ratio = (
            f"{direct.medianSeconds() / seconds:10.3f}"
            if direct.seconds and not direct.error
            else f"{'-':>10}"
        )
        cpu = measurement.medianCPU()
        if cpu is None:
            cpuText, perGB = f"{'-':>25}", f"{'-':>9}"
        else:
            detail = f"{cpu.total:.2f} ({cpu.user:.2f}+{cpu.system:.2f})"
            cpuText, perGB = f"{detail:>25}", f"{cpu.total / (size / 1e9):9.2f}"
        name = measurement.name
        print(f"{name:<14} {seconds:8.3f} {rate:7.3f} {ratio} {cpuText} {perGB}")

    ours = results.get("socks-twisted")
    if ours is None or ours.error or not ours.seconds:
        return
    print()
    for name in ("microsocks", "dante"):
        peer = results.get(name)
        if peer is None or peer.error or not peer.seconds:
            continue
        speed = peer.medianSeconds() / ours.medianSeconds()
        line = f"socks-twisted / {name}: throughput {speed:.3f}x"
        oursCPU, peerCPU = ours.medianCPU(), peer.medianCPU()
        if oursCPU is not None and peerCPU is not None and peerCPU.total > 0:
            line += f", server CPU {oursCPU.total / peerCPU.total:.2f}x"
        print(line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
