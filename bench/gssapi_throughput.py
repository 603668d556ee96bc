"""
What each GSSAPI protection level costs in throughput: one transfer
through our SOCKS5 client and our server, both in this process on
loopback, without authentication (spliced, and copied) and with GSSAPI at
levels 0 (none), 1 (integrity) and 2 (confidentiality), in a throwaway
Kerberos realm on 127.0.0.1 (k5test, MIT Kerberos: as the tests run it).

The client wraps and the server unwraps in the same process, on one core:
compare the levels with each other, not with other benchmarks.

With C{--udp}, the same cases (less the spliced one: datagrams are never
spliced) are then measured for a UDP association: our client
(L{SOCKSProxy.udp<socks_twisted.client.SOCKSProxy.udp>}) sends
C{--datagrams} datagrams of C{--udp-size} octets through our server to a UDP
echo server on 127.0.0.1, all three in this process, keeping
C{--udp-window} of them outstanding and resending none: an echo that does
not come within C{--loss-wait} seconds is counted lost.  Under integrity
and confidentiality each datagram, SOCKS UDP header included, is one
RFC 1961 message both ways between the client and the server.  A
measurement stops sending after C{--udp-seconds} seconds.  The report gives,
per case, the medians of round trips per second and of this process's CPU
time (client, server and echo together) per round trip, with their ratio to
GSSAPI level 0, and the datagrams lost over all rounds.  C{--udp-only} skips
the TCP part.

Run from the repository root::

    python bench/gssapi_throughput.py --size 64MiB --rounds 3
    python bench/gssapi_throughput.py --rounds 3 --udp --udp-size 1200
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFromThreads,
    IReactorUDP,
)
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.relay_throughput import parseSize
from socks_twisted import _gss
from socks_twisted._wire import ProtectionLevel
from socks_twisted.auth import GSSAPIPrincipalChecker, portalFor
from socks_twisted.client import GSSAPIOptions, SOCKS5ClientEndpoint, SOCKSProxy
from socks_twisted.server import (
    GSSAPISettings,
    ServerSettings,
    SOCKSServerFactory,
)
from tests._kerberos import requireKerberosRealm

reactor: Any = _reactor

#: Bytes per write of the sender.
CHUNK = 1 << 20


class _Sink(Protocol):
    """
    Counts what arrives; fires C{done} with the time the last byte came.
    """

    def __init__(self, size: int, done: Deferred[float]) -> None:
        self.size = size
        self.received = 0
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.size and not self.done.called:
            self.done.callback(time.perf_counter())


class _Sender(Protocol):
    """
    Writes C{size} random bytes as a streaming producer.
    """

    def __init__(self, size: int) -> None:
        self.left = size
        self.paused = False
        self.chunk = os.urandom(CHUNK)

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        assert self.transport is not None
        self.paused = False
        while self.left > 0 and not self.paused:
            piece = self.chunk[: self.left]
            self.left -= len(piece)
            self.transport.write(piece)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.left = 0


class _Fixture(SynchronousTestCase):
    """
    What the tests' Kerberos realm fixture needs to run outside trial.
    """

    def runTest(self) -> None:
        pass


async def _transfer(
    size: int,
    gssapi: GSSAPISettings | None,
    level: ProtectionLevel,
    splice: bool,
    pool: ThreadPool,
) -> float:
    done: Deferred[float] = Deferred()
    sink = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: _Sink(size, done))
    )
    factory = SOCKSServerFactory(
        reactor, settings=ServerSettings(gssapi=gssapi, splice=splice)
    )
    proxy = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    endpoint = SOCKS5ClientEndpoint(
        "127.0.0.1",
        sink.getHost().port,
        TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.getHost().port),
        reactor=reactor,
        gssapi=(
            None
            if gssapi is None
            else GSSAPIOptions(host="localhost", protection=level, threadpool=pool)
        ),
    )
    started = time.perf_counter()
    sender = await connectProtocol(endpoint, _Sender(size))
    ended = await done
    assert sender.transport is not None
    sender.transport.loseConnection()
    await sink.stopListening()
    await proxy.stopListening()
    return ended - started


async def main(arguments: argparse.Namespace) -> None:
    """
    Start the realm, measure TCP (unless C{--udp-only}), then UDP (with
    C{--udp} or C{--udp-only}), print.
    """
    realm = requireKerberosRealm(_Fixture())
    pool = ThreadPool(1, 4, name="gssapi-bench")
    pool.start()
    credentials = _gss.acceptorCredentials(realm.keytab)
    gssapi = GSSAPISettings(
        newAcceptor=lambda: _gss.Acceptor(
            credentials, IReactorFromThreads(reactor), pool
        ),
        portal=portalFor([GSSAPIPrincipalChecker()]),
    )
    try:
        if not arguments.udp_only:
            await _tcpReport(arguments, gssapi, pool)
        if arguments.udp or arguments.udp_only:
            await _udpReport(arguments, gssapi, pool)
    finally:
        pool.stop()


async def _tcpReport(
    arguments: argparse.Namespace, gssapi: GSSAPISettings, pool: ThreadPool
) -> None:
    """
    The TCP transfers of every case, C{--rounds} times interleaved; print
    their medians.
    """
    cases = [
        ("no authentication, spliced", None, ProtectionLevel.NONE, True),
        ("no authentication, copied", None, ProtectionLevel.NONE, False),
        ("GSSAPI level 0 (none)", gssapi, ProtectionLevel.NONE, True),
        ("GSSAPI level 1 (integrity)", gssapi, ProtectionLevel.INTEGRITY, True),
        (
            "GSSAPI level 2 (confidentiality)",
            gssapi,
            ProtectionLevel.CONFIDENTIALITY,
            True,
        ),
    ]
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for _ in range(arguments.rounds):
        for name, settings, level, splice in cases:
            times[name].append(
                await _transfer(arguments.size, settings, level, splice, pool)
            )
    reference = statistics.median(times[cases[0][0]])
    print(f"{arguments.size} bytes one way, {arguments.rounds} round(s), medians:")
    for name, *_ in cases:
        seconds = statistics.median(times[name])
        print(
            f"  {name:34} {seconds:6.3f} s  {arguments.size / seconds / 1e6:7.0f} MB/s"
            f"  {seconds / reference:5.1f}x the time of the first"
        )


# UDP

#: The round-trip number that starts every datagram.
_SEQUENCE = struct.Struct("!Q")

#: The largest C{--udp-size}: the tests send 60000 octets at every level.
MAX_UDP_SIZE = 60_000


class _Echo(DatagramProtocol):
    """
    Sends every datagram back where it came from, unchanged.
    """

    noisy = False

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.write(datagram, addr)


@dataclass
class _UDPResult:
    """
    One UDP measurement.

    @ivar sent: Datagrams sent.
    @ivar received: Echoes received in time (each datagram counted once).
    @ivar lost: Datagrams whose echo did not come within the loss wait.
    @ivar seconds: Wall-clock time from the first send to the end.
    @ivar cpuSeconds: This process's CPU time (all threads) over the same.
    """

    sent: int
    received: int
    lost: int
    seconds: float
    cpuSeconds: float

    @property
    def rate(self) -> float:
        """
        Round trips per second.
        """
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def cpuPerRoundTrip(self) -> float:
        """
        CPU seconds per round trip.
        """
        return self.cpuSeconds / self.received if self.received else float("inf")


class _Pinger(DatagramProtocol):
    """
    The association's protocol: keeps C{window} numbered datagrams
    outstanding to the echo server, sending one more for each echo, until
    C{count} were sent or C{seconds} passed; then waits for the last echoes.
    Nothing is sent again: when no echo at all came for C{lossWait} seconds
    (checked every C{lossWait} seconds), the outstanding datagrams are
    counted lost and the window is filled again.
    """

    noisy = False

    def __init__(
        self,
        echo: tuple[str, int],
        size: int,
        window: int,
        count: int,
        seconds: float,
        lossWait: float,
    ) -> None:
        self.echo = echo
        self.padding = b"\x00" * (size - _SEQUENCE.size)
        self.window = window
        self.count = count
        self.seconds = seconds
        self.lossWait = lossWait
        self.outstanding: set[int] = set()
        self.sent = self.received = self.lost = 0
        self.done: Deferred[_UDPResult] = Deferred()
        self._check: IDelayedCall | None = None
        self._receivedAtCheck = 0
        self._startWall = self._startCPU = self._deadline = 0.0

    def measure(self) -> Deferred[_UDPResult]:
        """
        Start sending; the result fires when the last echo came or was
        counted lost.
        """
        self._startWall = time.perf_counter()
        self._startCPU = time.process_time()
        self._deadline = self._startWall + self.seconds
        self._refill()
        self._check = reactor.callLater(self.lossWait, self._checkLosses)
        return self.done

    def _refill(self) -> None:
        """
        Send until C{window} are outstanding, unless the count or the time
        is up.
        """
        if time.perf_counter() >= self._deadline:
            return
        transport = self.transport
        assert transport is not None
        while len(self.outstanding) < self.window and self.sent < self.count:
            self.outstanding.add(self.sent)
            transport.write(_SEQUENCE.pack(self.sent) + self.padding, self.echo)
            self.sent += 1

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if len(datagram) < _SEQUENCE.size:
            return
        (number,) = _SEQUENCE.unpack_from(datagram)
        if number not in self.outstanding:
            return  # a late echo of a datagram already counted lost
        self.outstanding.discard(number)
        self.received += 1
        self._refill()
        if not self.outstanding:
            self._finish()

    def _checkLosses(self) -> None:
        """
        No echo since the last check: the outstanding are lost.
        """
        self._check = None
        if self.received == self._receivedAtCheck:
            self.lost += len(self.outstanding)
            self.outstanding.clear()
            self._refill()
            if not self.outstanding:
                self._finish()
                return
        self._receivedAtCheck = self.received
        self._check = reactor.callLater(self.lossWait, self._checkLosses)

    def _finish(self) -> None:
        if self.done.called:
            return
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None
        self.done.callback(
            _UDPResult(
                self.sent,
                self.received,
                self.lost,
                time.perf_counter() - self._startWall,
                time.process_time() - self._startCPU,
            )
        )


async def _waitUntil(condition: Callable[[], bool], what: str, seconds: float) -> None:
    """
    Poll C{condition} every 10 ms for at most C{seconds}.

    @raise RuntimeError: It did not become true.
    """
    for _ in range(max(1, int(seconds / 0.01))):
        if condition():
            return
        await deferLater(reactor, 0.01)
    if not condition():
        raise RuntimeError(f"timed out waiting for {what}")


async def _roundTrips(
    arguments: argparse.Namespace,
    gssapi: GSSAPISettings | None,
    level: ProtectionLevel,
    pool: ThreadPool,
    echo: tuple[str, int],
) -> _UDPResult:
    """
    One UDP measurement: a server of its own, one association through it
    at C{level} (checked: the server agreed it, and the client protects
    datagrams exactly when the level is above 0), round trips, teardown.
    """
    factory = SOCKSServerFactory(reactor, settings=ServerSettings(gssapi=gssapi))
    listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        factory
    )
    try:
        proxy = SOCKSProxy(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", listening.getHost().port),
            gssapi=(
                None
                if gssapi is None
                else GSSAPIOptions(
                    host="localhost",
                    protection=level,
                    minimumProtection=level,
                    threadpool=pool,
                )
            ),
        )
        pinger = _Pinger(
            echo,
            arguments.udp_size,
            arguments.udp_window,
            arguments.datagrams,
            arguments.udp_seconds,
            arguments.loss_wait,
        )
        association = await proxy.udp(pinger)
        try:
            (session,) = factory.sessions
            agreed = None if gssapi is None else level
            protected = association.controlTransport.datagramProtection is not None
            if session.protection != agreed or protected != (
                level is not ProtectionLevel.NONE
            ):
                raise RuntimeError(
                    f"asked for {agreed!r}, the server agreed {session.protection!r}"
                    f" and the client protects datagrams: {protected}"
                )
            return await pinger.measure()
        finally:
            await association.stopListening()
            await _waitUntil(lambda: not factory.sessions, "the session's end", 10)
    finally:
        await listening.stopListening()


async def _udpReport(
    arguments: argparse.Namespace, gssapi: GSSAPISettings, pool: ThreadPool
) -> None:
    """
    The UDP round trips of every case, C{--rounds} times interleaved; print
    their medians and ratios to GSSAPI level 0.
    """
    cases = [
        ("no authentication", None, ProtectionLevel.NONE),
        ("GSSAPI level 0 (none)", gssapi, ProtectionLevel.NONE),
        ("GSSAPI level 1 (integrity)", gssapi, ProtectionLevel.INTEGRITY),
        ("GSSAPI level 2 (confidentiality)", gssapi, ProtectionLevel.CONFIDENTIALITY),
    ]
    udp: IReactorUDP = reactor
    echoPort = udp.listenUDP(0, _Echo(), "127.0.0.1", 65535)
    echo = ("127.0.0.1", echoPort.getHost().port)  # type: ignore[attr-defined]
    results: dict[str, list[_UDPResult]] = {name: [] for name, *_ in cases}
    try:
        for _ in range(arguments.rounds):
            for name, settings, level in cases:
                results[name].append(
                    await _roundTrips(arguments, settings, level, pool, echo)
                )
    finally:
        await maybeDeferred(echoPort.stopListening)
    rates = {
        name: statistics.median(r.rate for r in rs) for name, rs in results.items()
    }
    cpus = {
        name: statistics.median(r.cpuPerRoundTrip for r in rs)
        for name, rs in results.items()
    }
    reference = cases[1][0]
    print(
        f"UDP: {arguments.datagrams} datagrams of {arguments.udp_size} octets per"
        f" measurement, {arguments.udp_window} outstanding, at most"
        f" {arguments.udp_seconds:g} s of sending; {arguments.rounds} round(s),"
        " medians.\n"
        "CPU: this whole process (client, server and echo); ratios to GSSAPI"
        " level 0."
    )
    print(
        f"  {'':34} {'round trips/s':>13} {'(min-max)':>15} {'ratio':>6}"
        f" {'CPU µs/round trip':>17} {'ratio':>6} {'lost/sent':>13}"
    )
    for name, *_ in cases:
        lost = sum(r.lost for r in results[name])
        sent = sum(r.sent for r in results[name])
        low = min(r.rate for r in results[name])
        high = max(r.rate for r in results[name])
        print(
            f"  {name:34} {rates[name]:13.0f} {f'({low:.0f}-{high:.0f})':>15}"
            f" {rates[name] / rates[reference]:6.2f}"
            f" {cpus[name] * 1e6:17.1f} {cpus[name] / cpus[reference]:6.2f}"
            f" {f'{lost}/{sent}':>13}"
        )
    print("  (lost/sent: over all rounds)")


def run(argv: Sequence[str]) -> None:
    """
    Parse C{argv}, measure, print.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parseSize, default=64 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--udp", action="store_true", help="measure UDP round trips after TCP"
    )
    parser.add_argument(
        "--udp-only", action="store_true", help="measure UDP round trips only"
    )
    parser.add_argument(
        "--udp-size", type=int, default=1200, help="octets per datagram (payload)"
    )
    parser.add_argument(
        "--datagrams", type=int, default=20000, help="datagrams per measurement"
    )
    parser.add_argument(
        "--udp-window", type=int, default=64, help="datagrams outstanding"
    )
    parser.add_argument(
        "--udp-seconds",
        type=float,
        default=30.0,
        help="seconds of sending at most, per measurement",
    )
    parser.add_argument(
        "--loss-wait",
        type=float,
        default=0.5,
        help="seconds without any echo after which the outstanding are lost",
    )
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not _SEQUENCE.size <= arguments.udp_size <= MAX_UDP_SIZE:
        parser.error(f"--udp-size must be from {_SEQUENCE.size} to {MAX_UDP_SIZE}")
    if arguments.datagrams < 1 or arguments.udp_window < 1:
        parser.error("--datagrams and --udp-window must be at least 1")
    if not 0 < arguments.udp_seconds <= 600 or not 0 < arguments.loss_wait <= 60:
        parser.error("--udp-seconds must be in (0, 600], --loss-wait in (0, 60]")
    failures: list[object] = []

    def go() -> None:
        finished = ensureDeferred(main(arguments))
        finished.addErrback(lambda failure: failures.append(failure.printTraceback()))
        finished.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    run(sys.argv[1:])
