"""
What each GSSAPI protection level costs in throughput: one transfer
through our SOCKS5 client and our server, both in this process on
loopback, without authentication (spliced, and copied) and with GSSAPI at
levels 0 (none), 1 (integrity) and 2 (confidentiality), in a throwaway
Kerberos realm on 127.0.0.1 (k5test, MIT Kerberos: as the tests run it).

The client wraps and the server unwraps in the same process, on one core:
compare the levels with each other, not with other benchmarks.

Run from the repository root::

    python bench/gssapi_throughput.py --size 64MiB --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.protocol import Factory, Protocol
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.relay_throughput import parseSize
from socks_twisted import _gss
from socks_twisted._wire import ProtectionLevel
from socks_twisted.auth import GSSAPIPrincipalChecker, portalFor
from socks_twisted.client import GSSAPIOptions, SOCKS5ClientEndpoint
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
    try:
        for _ in range(arguments.rounds):
            for name, settings, level, splice in cases:
                times[name].append(
                    await _transfer(arguments.size, settings, level, splice, pool)
                )
    finally:
        pool.stop()
    reference = statistics.median(times[cases[0][0]])
    print(f"{arguments.size} bytes one way, {arguments.rounds} round(s), medians:")
    for name, *_ in cases:
        seconds = statistics.median(times[name])
        print(
            f"  {name:34} {seconds:6.3f} s  {arguments.size / seconds / 1e6:7.0f} MB/s"
            f"  {seconds / reference:5.1f}x the time of the first"
        )


def run(argv: Sequence[str]) -> None:
    """
    Parse C{argv}, measure, print.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parseSize, default=64 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args(argv)
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
