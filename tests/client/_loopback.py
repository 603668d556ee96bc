"""
Real loopback TCP for the client tests: an echo server, our SOCKS server, a
client protocol that collects what it receives, waiting with deadlines, and
a test certificate authority.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import (
    Factory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

#: The reactor the loopback tests run on.
reactor: Any = _globalReactor
clock: IReactorTime = _globalReactor

#: How long any single wait in these tests may take.
WAIT = 10.0

#: Where the loopback tests listen and connect.
LOOPBACK = "127.0.0.1"

_T = TypeVar("_T", bound=TestCase)


def asyncTest(
    method: Callable[[_T], Coroutine[Any, Any, None]],
) -> Callable[[_T], Deferred[None]]:
    """
    Let trial run an C{async def} test method.
    """

    @functools.wraps(method)
    def run(self: _T) -> Deferred[None]:
        return ensureDeferred(method(self))

    return run


def withTimeout(d: Deferred[Any], what: str, seconds: float = WAIT) -> Deferred[Any]:
    """
    Fail C{d} if it has not fired within C{seconds}, saying what it was.
    """

    def explain(reason: Failure) -> Failure:
        from twisted.internet.defer import TimeoutError as DeferredTimeout

        if reason.check(DeferredTimeout):
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        return reason

    return d.addTimeout(seconds, clock).addErrback(explain)


async def waitUntil(
    predicate: Callable[[], bool], what: str, seconds: float = WAIT
) -> None:
    """
    Poll C{predicate} every 10 ms until it holds.

    @raise AssertionError: It did not within C{seconds}.
    """
    waited = 0.0
    while not predicate():
        if waited >= seconds:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await deferLater(clock, 0.01, lambda: None)
        waited += 0.01


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    Echo every byte; on end-of-file, send C{b"[EOF]"} and close.
    """

    factory: EchoFactory

    def connectionMade(self) -> None:
        """
        Count the connection.
        """
        self.factory.open.add(self)
        assert self.transport is not None
        self.factory.peers.append(self.transport.getPeer())

    def dataReceived(self, data: bytes) -> None:
        """
        Send C{data} back.
        """
        self.factory.received += data
        assert self.transport is not None
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        """
        Answer the half-close, then close.
        """
        assert self.transport is not None
        self.transport.write(b"[EOF]")
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing to do.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Forget the connection.
        """
        self.factory.open.discard(self)


class EchoFactory(ServerFactory[Echo]):
    """
    Builds L{Echo}s and keeps track of them.

    @ivar open: The connections open now.
    @ivar peers: Who connected, in order.
    @ivar received: Every byte received, over all connections.
    """

    noisy = False

    def __init__(self) -> None:
        self.open: set[Echo] = set()
        self.peers: list[IAddress] = []
        self.received = b""

    def buildProtocol(self, addr: IAddress | None) -> Echo:
        """
        Build an L{Echo}.
        """
        protocol = Echo()
        protocol.factory = self
        return protocol


async def listen(
    testCase: TestCase, factory: IProtocolFactory, interface: str = "127.0.0.1"
) -> IListeningPort:
    """
    Listen with C{factory} on a free loopback port until the test ends.
    """
    if ":" in interface:
        endpoint: Any = TCP6ServerEndpoint(reactor, 0, interface=interface)
    else:
        endpoint = TCP4ServerEndpoint(reactor, 0, interface=interface)
    port: IListeningPort = await endpoint.listen(factory)
    testCase.addCleanup(port.stopListening)
    return port


async def listenEcho(
    testCase: TestCase, interface: str = "127.0.0.1"
) -> tuple[EchoFactory, int]:
    """
    Start an echo server; at cleanup, wait until all its connections closed.

    @return: Its factory and port.
    """
    factory = EchoFactory()
    port = await listen(testCase, factory, interface)

    async def closed() -> None:
        await waitUntil(lambda: not factory.open, "the echo server's connections")

    testCase.addCleanup(lambda: ensureDeferred(closed()))
    number: int = port.getHost().port  # type: ignore[attr-defined]
    return factory, number


async def startOurServer(testCase: TestCase, **kwargs: Any) -> tuple[int, Any]:
    """
    Start a L{SOCKSServerFactory} on a free loopback port; at cleanup, wait
    until its sessions are gone.

    @return: Its port and factory.
    """
    # Imported here, so that the client tests that need no server import
    # this module without it.
    from socks_twisted.server import SOCKSServerFactory

    factory = SOCKSServerFactory(reactor, **kwargs)
    port = await listen(testCase, factory)

    async def drained() -> None:
        await waitUntil(lambda: not factory.sessions, "the SOCKS sessions to end")

    testCase.addCleanup(lambda: ensureDeferred(drained()))
    return port.getHost().port, factory  # type: ignore[attr-defined]


@implementer(IHalfCloseableProtocol)
class Collector(Protocol):
    """
    A client that keeps what it receives and can wait for it.

    @ivar received: Every byte received.
    @ivar events: C{"readConnectionLost"} and C{"connectionLost"}, in order.
    @ivar lost: Fires (with L{None}) at C{connectionLost}.
    @ivar reason: The reason given to C{connectionLost}, once called.
    """

    def __init__(self) -> None:
        self.received = b""
        self.events: list[str] = []
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self._waiting: list[tuple[int, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        """
        Keep C{data}; wake whoever waits for this many bytes.
        """
        self.received += data
        still = []
        for count, d in self._waiting:
            if len(self.received) >= count:
                d.callback(self.received)
            else:
                still.append((count, d))
        self._waiting = still

    def waitForBytes(self, count: int) -> Deferred[bytes]:
        """
        Fire with everything received once at least C{count} bytes came.
        """
        if len(self.received) >= count:
            return succeed(self.received)
        d: Deferred[bytes] = Deferred()
        self._waiting.append((count, d))
        return withTimeout(d, f"{count} bytes (have {len(self.received)})")

    def readConnectionLost(self) -> None:
        """
        Record end-of-file and close: nothing more will come.
        """
        self.events.append("readConnectionLost")
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Record the end of writing.
        """
        self.events.append("writeConnectionLost")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Record the end.
        """
        self.events.append("connectionLost")
        self.reason = reason
        self.lost.callback(None)

    def close(self) -> Deferred[Any]:
        """
        Close if open, and wait for the end.
        """
        if not self.lost.called and self.transport is not None:
            self.transport.loseConnection()
        result: Deferred[None] = Deferred()

        def done(ignored: None) -> None:
            result.callback(None)

        self.lost.addCallback(done)
        return withTimeout(result, "the client connection to close")


async def connectCollector(
    testCase: TestCase, endpoint: IStreamClientEndpoint
) -> Collector:
    """
    Connect a L{Collector} through C{endpoint}; close it at cleanup.
    """
    client = Collector()
    await withTimeout(connectProtocol(endpoint, client), f"connecting {endpoint}")
    testCase.addCleanup(client.close)
    return client


async def roundTrip(
    testCase: TestCase, endpoint: IStreamClientEndpoint, payload: bytes
) -> Collector:
    """
    Connect through C{endpoint} to an echo server, send C{payload}, check
    it comes back whole, and return the client.
    """
    client = await connectCollector(testCase, endpoint)
    assert client.transport is not None
    client.transport.write(payload)
    received = await client.waitForBytes(len(payload))
    testCase.assertEqual(received, payload)
    return client


async def exchangeThroughBind(
    testCase: TestCase,
    bind: Callable[[IProtocolFactory], Deferred[Any]],
    size: int = 300_000,
) -> None:
    """
    BIND with C{bind} (a BIND client's or a proxy's C{bind}), connect a peer
    to the IPv4 address the first reply names, and check that the second
    reply gives the application the connection and that bytes go both ways:
    a few from the peer, C{size} random ones to it.
    """
    app = Collector()
    pending = await withTimeout(
        bind(Factory.forProtocol(lambda: app)), "the first reply"
    )
    address = pending.address
    assert isinstance(address, IPv4Address)
    peer = Collector()
    await withTimeout(
        connectProtocol(TCP4ClientEndpoint(reactor, address.host, address.port), peer),
        "the peer's connection",
    )
    testCase.addCleanup(peer.close)
    testCase.assertIs(await withTimeout(pending.accepted(), "the second reply"), app)
    testCase.addCleanup(app.close)
    assert app.transport is not None and peer.transport is not None
    peer.transport.write(b"from the peer")
    testCase.assertEqual(await app.waitForBytes(13), b"from the peer")
    payload = os.urandom(size)
    app.transport.write(payload)
    testCase.assertEqual(await peer.waitForBytes(size), payload)


class ProxyTestCase(TestCase):
    """
    Helpers for tests that connect through a proxy on loopback.
    """

    async def closedPort(self) -> int:
        """
        A loopback port nobody listens on (right now).
        """
        port = await listen(self, ServerFactory.forProtocol(Protocol))
        number: int = port.getHost().port  # type: ignore[attr-defined]
        await maybeDeferred(port.stopListening)
        return number

    async def assertFails(
        self, endpoint: IStreamClientEndpoint, *expected: type[BaseException]
    ) -> BaseException:
        """
        Connecting through C{endpoint} fails with one of C{expected}.
        """
        try:
            protocol = await withTimeout(
                connectProtocol(endpoint, Protocol()), f"{endpoint} to fail"
            )
        except expected as e:
            return e
        protocol.transport.loseConnection()
        self.fail(f"connecting through {endpoint} succeeded")


class CertificateAuthority:
    """
    A certificate authority made for one test, and a server certificate it
    signed for C{tls.test} and C{127.0.0.1}.

    @ivar caPEM: The authority's certificate.
    @ivar serverPEM: The server's certificate and key.
    """

    def __init__(self, names: tuple[str, ...] = ("tls.test",)) -> None:
        now = datetime.datetime.now(datetime.UTC)
        caKey = ec.generate_private_key(ec.SECP256R1())
        caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        caCert = (
            x509.CertificateBuilder()
            .subject_name(caName)
            .issuer_name(caName)
            .public_key(caKey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .sign(caKey, hashes.SHA256())
        )
        serverKey = ec.generate_private_key(ec.SECP256R1())
        alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        alternatives.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        serverCert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
            )
            .issuer_name(caName)
            .public_key(serverKey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alternatives), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(caKey, hashes.SHA256())
        )
        self.caPEM = caCert.public_bytes(serialization.Encoding.PEM)
        self.serverPEM = serverCert.public_bytes(
            serialization.Encoding.PEM
        ) + serverKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
