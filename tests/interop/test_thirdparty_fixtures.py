# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{tests.interop._thirdparty}: each third-party SOCKS server starts,
relays bytes to a loopback echo server for a real client (python-socks), and
enforces its authentication.
"""

from __future__ import annotations

import os
import socket
from unittest import mock

from python_socks import ProxyError, ProxyType
from python_socks.sync import Proxy
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from tests.interop import _thirdparty
from tests.interop._support import requirePeer
from tests.interop._thirdparty import (
    ThirdPartyServer,
    requireGSSAPIDante,
    requireGSSAPIDanteClient,
    startDante,
    startMicrosocks,
    startSSHDynamic,
)

_TIMEOUT = 10.0
_clock: IReactorTime = reactor


class _EchoRecord:
    """
    What the echo server saw.

    @ivar connections: How many connections were accepted.
    @ivar received: All bytes received, over all connections.
    @ivar open: How many connections are still open.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""
        self.open = 0
        self._waiting: list[Deferred[None]] = []

    def connectionMade(self) -> None:
        """
        Count a new connection.
        """
        self.connections += 1
        self.open += 1

    def connectionLost(self) -> None:
        """
        Count a closed connection; wake L{whenAllClosed} waiters at zero.
        """
        self.open -= 1
        if self.open == 0:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def whenAllClosed(self) -> Deferred[None]:
        """
        Fire when no connection is open, failing after L{_TIMEOUT} seconds.
        """
        if self.open == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        d.addTimeout(_TIMEOUT, _clock)
        return d


class _RecordingEcho(Protocol):
    """
    Echo every byte back and add it to an L{_EchoRecord}.
    """

    def __init__(self, record: _EchoRecord) -> None:
        self.record = record

    def connectionMade(self) -> None:
        self.record.connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.record.received += data
        assert self.transport is not None
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.record.connectionLost()


class _EchoFactory(ServerFactory):
    """
    Build L{_RecordingEcho}s that share one L{_EchoRecord}.
    """

    def __init__(self, record: _EchoRecord) -> None:
        self.record = record

    def buildProtocol(self, addr: IAddress | None) -> _RecordingEcho:
        protocol = _RecordingEcho(self.record)
        protocol.factory = self
        return protocol


def _echoThrough(
    server: ThirdPartyServer,
    proxyType: ProxyType,
    destHost: str,
    destPort: int,
    payload: bytes,
    *,
    username: str | None = None,
    password: str | None = None,
    rdns: bool | None = None,
) -> bytes:
    """
    Blocking: connect to C{destHost:destPort} through C{server}, send
    C{payload} and return what comes back (at most C{len(payload)} bytes,
    less if the connection closes first).  Run it in a thread.
    """
    proxy = Proxy(
        proxyType,
        server.host,
        server.port,
        username=username,
        password=password,
        rdns=rdns,
    )
    sock: socket.socket = proxy.connect(destHost, destPort, timeout=_TIMEOUT)
    with sock:
        sock.settimeout(_TIMEOUT)
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


class _EchoTestCase(TestCase):
    """
    Start a loopback echo server in the trial reactor for each test.
    """

    echo: _EchoRecord
    echoPort: int

    def setUp(self) -> None:
        self.echo = _EchoRecord()
        tcp: IReactorTCP = reactor
        listening: IListeningPort = tcp.listenTCP(
            0, _EchoFactory(self.echo), interface="127.0.0.1"
        )
        self.addCleanup(listening.stopListening)
        self.echoPort = listening.getHost().port  # type: ignore[attr-defined]

    async def assertEchoes(
        self,
        server: ThirdPartyServer,
        proxyType: ProxyType,
        *,
        destHost: str = "127.0.0.1",
        rdns: bool | None = None,
    ) -> None:
        """
        Check that C{server} relays a payload to the echo server and back.
        """
        payload = b"hello through " + server.name.encode("ascii") + b"\x00\xff" * 64
        received = await deferToThread(
            _echoThrough,
            server,
            proxyType,
            destHost,
            self.echoPort,
            payload,
            username=server.username,
            password=server.password,
            rdns=rdns,
        )
        self.assertEqual(received, payload)
        self.assertEqual(self.echo.received, payload)
        self.assertEqual(self.echo.connections, 1)
        # The proxy passes our close on; wait for it so that no connection
        # outlives the test.
        await self.echo.whenAllClosed()

    async def assertRefused(
        self,
        server: ThirdPartyServer,
        proxyType: ProxyType,
        *,
        username: str | None = None,
        password: str | None = None,
        destHost: str = "127.0.0.1",
        rdns: bool | None = None,
    ) -> ProxyError:
        """
        Check that C{server} refuses the request and the echo server sees
        neither a connection nor a byte.
        """
        try:
            await deferToThread(
                _echoThrough,
                server,
                proxyType,
                destHost,
                self.echoPort,
                b"must not arrive",
                username=username,
                password=password,
                rdns=rdns,
            )
        except ProxyError as e:
            error = e
        else:
            self.fail(f"{server.name} accepted {username!r}/{password!r}")
        self.assertEqual(self.echo.received, b"")
        self.assertEqual(self.echo.connections, 0)
        return error


class RequirePeerTests(TestCase):
    """
    Tests for L{requirePeer}.
    """

    def test_found(self) -> None:
        """
        An installed program is returned as an absolute path.
        """
        path = requirePeer("sh", "dash")
        self.assertTrue(os.path.isabs(path))
        self.assertEqual(os.path.basename(path), "sh")

    def test_missingSkips(self) -> None:
        """
        Outside CI a missing program skips the test, naming the package.
        """
        with mock.patch.dict(os.environ, {"CI": ""}):
            with self.assertRaises(SkipTest) as raised:
                requirePeer("no-such-socks-peer", "no-such-package")
        self.assertEqual(
            str(raised.exception),
            "no-such-socks-peer is missing; apt-get install no-such-package",
        )

    def test_missingFailsInCI(self) -> None:
        """
        In CI a missing program is a failure, naming the package.
        """
        with mock.patch.dict(os.environ, {"CI": "true"}):
            with self.assertRaises(AssertionError) as raised:
                requirePeer("no-such-socks-peer", "no-such-package")
        self.assertEqual(
            str(raised.exception),
            "no-such-socks-peer is missing; apt-get install no-such-package",
        )


class RequireGSSAPIDanteTests(TestCase):
    """
    Tests for L{requireGSSAPIDante}.
    """

    def test_found(self) -> None:
        """
        An executable at L{_thirdparty.DANTE_GSSAPI} is returned.
        """
        with mock.patch.object(_thirdparty, "DANTE_GSSAPI", "/bin/sh"):
            self.assertEqual(requireGSSAPIDante(), "/bin/sh")

    def test_missingSkips(self) -> None:
        """
        Outside CI a missing binary skips the test, naming the script that
        builds it.
        """
        with mock.patch.object(_thirdparty, "DANTE_GSSAPI", "/no/such/danted"):
            with mock.patch.dict(os.environ, {"CI": ""}):
                with self.assertRaises(SkipTest) as raised:
                    requireGSSAPIDante()
        self.assertIn("/no/such/danted missing", str(raised.exception))
        self.assertIn(".ci/build-dante-gssapi", str(raised.exception))

    def test_missingFailsInCI(self) -> None:
        """
        In CI a missing binary is a failure.
        """
        with mock.patch.object(_thirdparty, "DANTE_GSSAPI", "/no/such/danted"):
            with mock.patch.dict(os.environ, {"CI": "true"}):
                with self.assertRaises(AssertionError) as raised:
                    requireGSSAPIDante()
        self.assertIn(".ci/build-dante-gssapi", str(raised.exception))


class RequireGSSAPIDanteClientTests(TestCase):
    """
    Tests for L{requireGSSAPIDanteClient}.
    """

    def test_found(self) -> None:
        """
        A file at L{_thirdparty.DANTE_GSSAPI_CLIENT} is returned.
        """
        with mock.patch.object(_thirdparty, "DANTE_GSSAPI_CLIENT", "/bin/sh"):
            self.assertEqual(requireGSSAPIDanteClient(), "/bin/sh")

    def test_missingSkips(self) -> None:
        """
        Outside CI a missing library skips the test, naming the script that
        builds it.
        """
        missing = "/no/such/libdsocks.so"
        with mock.patch.object(_thirdparty, "DANTE_GSSAPI_CLIENT", missing):
            with mock.patch.dict(os.environ, {"CI": ""}):
                with self.assertRaises(SkipTest) as raised:
                    requireGSSAPIDanteClient()
        self.assertIn(f"{missing} missing", str(raised.exception))
        self.assertIn(".ci/build-dante-gssapi", str(raised.exception))

    def test_missingFailsInCI(self) -> None:
        """
        In CI a missing library is a failure.
        """
        missing = "/no/such/libdsocks.so"
        with mock.patch.object(_thirdparty, "DANTE_GSSAPI_CLIENT", missing):
            with mock.patch.dict(os.environ, {"CI": "true"}):
                with self.assertRaises(AssertionError) as raised:
                    requireGSSAPIDanteClient()
        self.assertIn(".ci/build-dante-gssapi", str(raised.exception))


class DanteTests(_EchoTestCase):
    """
    Tests for L{startDante}.
    """

    async def test_socks5NoAuth(self) -> None:
        """
        Dante without auth relays a SOCKS5 CONNECT to the echo server.
        """
        server = startDante(self)
        self.assertIsNone(server.username)
        await self.assertEchoes(server, ProxyType.SOCKS5)

    async def test_socks5Username(self) -> None:
        """
        Dante with auth accepts the system account's password.
        """
        server = startDante(self, auth=True)
        self.assertIsNotNone(server.username)
        await self.assertEchoes(server, ProxyType.SOCKS5)

    async def test_socks5WrongPassword(self) -> None:
        """
        Dante with auth refuses a wrong password before connecting anywhere.
        """
        server = startDante(self, auth=True)
        await self.assertRefused(
            server,
            ProxyType.SOCKS5,
            username=server.username,
            password="wrong-" + (server.password or ""),
        )

    async def test_socks5NoCredentials(self) -> None:
        """
        Dante with auth refuses a client that offers no credentials.
        """
        server = startDante(self, auth=True)
        await self.assertRefused(server, ProxyType.SOCKS5)

    async def test_socks4Connect(self) -> None:
        """
        Dante relays a SOCKS4 CONNECT to an IPv4 address.
        """
        server = startDante(self)
        await self.assertEchoes(server, ProxyType.SOCKS4)

    async def test_socks4aRejected(self) -> None:
        """
        Dante does not implement SOCKS4a: a host-name request is rejected.
        """
        server = startDante(self)
        await self.assertRefused(
            server,
            ProxyType.SOCKS4,
            destHost="localhost",
            rdns=True,
        )

    async def test_connectNotAllowed(self) -> None:
        """
        With C{commands=("bind",)} Dante refuses CONNECT.
        """
        server = startDante(self, commands=("bind",))
        await self.assertRefused(server, ProxyType.SOCKS5)


class MicrosocksTests(_EchoTestCase):
    """
    Tests for L{startMicrosocks}.
    """

    async def test_socks5NoAuth(self) -> None:
        """
        microsocks without auth relays a SOCKS5 CONNECT.
        """
        server = startMicrosocks(self)
        await self.assertEchoes(server, ProxyType.SOCKS5)

    async def test_socks5DomainName(self) -> None:
        """
        microsocks resolves a domain-name target itself.
        """
        server = startMicrosocks(self)
        await self.assertEchoes(
            server, ProxyType.SOCKS5, destHost="localhost", rdns=True
        )

    async def test_socks5Username(self) -> None:
        """
        microsocks with auth accepts its configured credentials.
        """
        server = startMicrosocks(self, auth=True)
        self.assertIsNotNone(server.username)
        await self.assertEchoes(server, ProxyType.SOCKS5)

    async def test_socks5WrongPassword(self) -> None:
        """
        microsocks with auth refuses a wrong password.
        """
        server = startMicrosocks(self, auth=True)
        await self.assertRefused(
            server,
            ProxyType.SOCKS5,
            username=server.username,
            password="wrong-" + (server.password or ""),
        )


class SSHDynamicTests(_EchoTestCase):
    """
    Tests for L{startSSHDynamic}.
    """

    async def test_socks5(self) -> None:
        """
        C{ssh -D} relays a SOCKS5 CONNECT through sshd.
        """
        server = startSSHDynamic(self)
        await self.assertEchoes(server, ProxyType.SOCKS5)

    async def test_socks4(self) -> None:
        """
        C{ssh -D} relays a SOCKS4 CONNECT through sshd.
        """
        server = startSSHDynamic(self)
        await self.assertEchoes(server, ProxyType.SOCKS4)

    async def test_socks4a(self) -> None:
        """
        C{ssh -D} relays a SOCKS4a CONNECT to a host name, resolved by sshd.
        """
        server = startSSHDynamic(self)
        await self.assertEchoes(
            server, ProxyType.SOCKS4, destHost="localhost", rdns=True
        )
