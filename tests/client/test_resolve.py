"""
L{SOCKSProxy.resolve} and L{SOCKSProxy.resolvePTR} (Tor's RESOLVE and
RESOLVE_PTR) against our own server over loopback TCP, the server resolving
through a test resolver (no real name is ever looked up), and against a
fake proxy that answers wrongly.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from socks_twisted import errors
from socks_twisted.auth import portalFor
from socks_twisted.client import SOCKSProxy
from socks_twisted.policy import parseRules

from ._loopback import (
    LOOPBACK,
    ProxyTestCase,
    asyncTest,
    listen,
    reactor,
    startOurServer,
    withTimeout,
)

#: What the test resolver knows: the proxy answers these, nothing else.
NAMES: dict[tuple[str, int], list[str]] = {
    ("resolve.test", socket.AF_INET): ["192.0.2.10"],
    ("resolve.test", socket.AF_INET6): ["2001:db8::10"],
    ("v6.test", socket.AF_INET6): ["2001:db8::11"],
    ("loop.test", socket.AF_INET): ["127.0.0.9"],
}
REVERSE = {"192.0.2.10": "resolve.test", "2001:db8::10": "resolve.test"}


def testResolve(name: str, family: int) -> defer.Deferred[list[str]]:
    """
    The server's resolver in these tests.
    """
    found = NAMES.get((name, family))
    if found:
        return defer.succeed(found)
    return defer.fail(error.DNSLookupError(name))


def testReverse(address: str) -> defer.Deferred[str]:
    """
    The server's reverse resolver in these tests.
    """
    if address in REVERSE:
        return defer.succeed(REVERSE[address])
    return defer.fail(socket.gaierror(socket.EAI_NONAME, "Name not known"))


class ResolveTestCase(ProxyTestCase):
    """
    Our server on loopback with the test resolvers.
    """

    timeout = 60

    async def start(self, scheme: str = "socks5h", **kwargs: Any) -> SOCKSProxy:
        """
        Start our server with C{kwargs} and return a proxy for it.
        """
        kwargs.setdefault("resolve", testResolve)
        kwargs.setdefault("reverse", testReverse)
        rules = kwargs.pop("rules", None)
        port, self.factory = await startOurServer(self, **kwargs)
        if rules is not None:
            self.factory.setRules(parseRules(rules, {}, "test.toml"), {})
        return SOCKSProxy.fromURL(reactor, f"{scheme}://{LOOPBACK}:{port}")

    async def assertLookupFails(
        self, d: defer.Deferred[str], kind: type[BaseException]
    ) -> BaseException:
        """
        C{d} fails with C{kind}.
        """
        try:
            result = await withTimeout(d, "the lookup")
        except kind as e:
            return e
        self.fail(f"{kind.__name__} not raised; got {result!r}")


class ResolveTests(ResolveTestCase):
    """
    RESOLVE through SOCKS5 and SOCKS4a.
    """

    @asyncTest
    async def test_socks5(self) -> None:
        """
        The proxy's answer: IPv4 first.
        """
        proxy = await self.start()
        self.assertEqual(await proxy.resolve("resolve.test"), "192.0.2.10")

    @asyncTest
    async def test_socks5LocalScheme(self) -> None:
        """
        C{socks5://} (names resolved here for CONNECT) still asks the proxy:
        that is the point of RESOLVE.
        """
        proxy = await self.start("socks5")
        self.assertEqual(await proxy.resolve(b"resolve.test"), "192.0.2.10")

    @asyncTest
    async def test_ipv6Answer(self) -> None:
        """
        A name with IPv6 addresses only is answered with one.
        """
        proxy = await self.start()
        self.assertEqual(await proxy.resolve("v6.test"), "2001:db8::11")

    @asyncTest
    async def test_socks4a(self) -> None:
        """
        C{socks4a://}: the answer comes in DSTIP.
        """
        proxy = await self.start("socks4a")
        self.assertEqual(await proxy.resolve("resolve.test"), "192.0.2.10")

    @asyncTest
    async def test_socks4aFailure(self) -> None:
        """
        SOCKS4 has one failure code: L{errors.SOCKS4RejectedError}.
        """
        proxy = await self.start("socks4a")
        await self.assertLookupFails(
            proxy.resolve("v6.test"), errors.SOCKS4RejectedError
        )

    def test_plainSOCKS4(self) -> None:
        """
        C{socks4://} cannot carry a name: L{ValueError} at once.
        """
        proxy = SOCKSProxy.fromURL(reactor, f"socks4://{LOOPBACK}:1")
        self.assertRaises(ValueError, proxy.resolve, "resolve.test")

    @asyncTest
    async def test_notFound(self) -> None:
        """
        A name that resolves to nothing: L{errors.HostUnreachableError}.
        """
        proxy = await self.start()
        await self.assertLookupFails(
            proxy.resolve("nothing.test"), errors.HostUnreachableError
        )

    @asyncTest
    async def test_denied(self) -> None:
        """
        A name whose every address the rules deny:
        L{errors.ConnectionNotAllowedError}.
        """
        proxy = await self.start(rules=[{"action": "deny", "to": ["loopback"]}])
        await self.assertLookupFails(
            proxy.resolve("loop.test"), errors.ConnectionNotAllowedError
        )

    @asyncTest
    async def test_turnedOff(self) -> None:
        """
        A proxy that does not serve RESOLVE:
        L{errors.CommandNotSupportedError}.
        """
        proxy = await self.start(torResolve=False)
        await self.assertLookupFails(
            proxy.resolve("resolve.test"), errors.CommandNotSupportedError
        )
        await self.assertLookupFails(
            proxy.resolvePTR("192.0.2.10"), errors.CommandNotSupportedError
        )

    @asyncTest
    async def test_credentials(self) -> None:
        """
        The URL's credentials are used (RFC 1929).
        """
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"pw")
        port, _ = await startOurServer(
            self, portal=portalFor([checker]), resolve=testResolve
        )
        good = SOCKSProxy.fromURL(reactor, f"socks5h://alice:pw@{LOOPBACK}:{port}")
        self.assertEqual(await good.resolve("resolve.test"), "192.0.2.10")
        bad = SOCKSProxy.fromURL(reactor, f"socks5h://alice:no@{LOOPBACK}:{port}")
        await self.assertLookupFails(
            bad.resolve("resolve.test"), errors.AuthenticationFailedError
        )

    @asyncTest
    async def test_cancel(self) -> None:
        """
        Cancelling while the proxy resolves fails the lookup with
        L{error.ConnectingCancelledError}, and the proxy's session ends.
        """
        held: list[defer.Deferred[list[str]]] = []

        def hold(name: str, family: int) -> defer.Deferred[list[str]]:
            held.append(defer.Deferred())
            return held[-1]

        proxy = await self.start(resolve=hold)
        lookup = proxy.resolve("resolve.test")
        for _ in range(200):
            if held:
                break
            await deferLater(reactor, 0.01)
        self.assertTrue(held)
        lookup.cancel()
        await self.assertLookupFails(lookup, error.ConnectingCancelledError)

    @asyncTest
    async def test_handshakeTimeout(self) -> None:
        """
        A proxy that does not answer within the handshake timeout:
        L{error.TimeoutError}.
        """
        proxy = await self.start(resolve=lambda name, family: defer.Deferred())
        slow = SOCKSProxy(reactor, proxy.proxyEndpoint, handshakeTimeout=0.2)
        await self.assertLookupFails(slow.resolve("resolve.test"), error.TimeoutError)


class ResolvePTRTests(ResolveTestCase):
    """
    RESOLVE_PTR through SOCKS5.
    """

    @asyncTest
    async def test_name(self) -> None:
        """
        The proxy's answer for an IPv4 and an IPv6 address.
        """
        proxy = await self.start()
        self.assertEqual(await proxy.resolvePTR("192.0.2.10"), "resolve.test")
        self.assertEqual(await proxy.resolvePTR("[2001:db8::10]"), "resolve.test")

    @asyncTest
    async def test_realLookupOfLoopback(self) -> None:
        """
        With the server's own reverse resolver (getnameinfo in a thread),
        127.0.0.1 gets the name this machine gives it.
        """
        expected, _ = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)
        proxy = await self.start(reverse=None)
        self.assertEqual(await proxy.resolvePTR("127.0.0.1"), expected)

    @asyncTest
    async def test_noName(self) -> None:
        """
        An address without a name: L{errors.HostUnreachableError}.
        """
        proxy = await self.start()
        await self.assertLookupFails(
            proxy.resolvePTR("192.0.2.99"), errors.HostUnreachableError
        )

    def test_notAnAddress(self) -> None:
        """
        A name is refused at once with L{ValueError}, as is SOCKS4.
        """
        proxy = SOCKSProxy.fromURL(reactor, f"socks5h://{LOOPBACK}:1")
        self.assertRaises(ValueError, proxy.resolvePTR, "resolve.test")
        socks4 = SOCKSProxy.fromURL(reactor, f"socks4a://{LOOPBACK}:1")
        self.assertRaises(ValueError, socks4.resolvePTR, "127.0.0.1")


class _Answering(Protocol):
    """
    A fake SOCKS5 proxy: selects no authentication, then answers the
    request with its factory's C{reply}.
    """

    factory: _AnsweringFactory

    def connectionMade(self) -> None:
        self._greeted = False

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if not self._greeted:
            self._greeted = True
            self.transport.write(b"\x05\x00")
        else:
            self.transport.write(self.factory.reply)


class _AnsweringFactory(Factory[_Answering]):
    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def buildProtocol(self, addr: IAddress | None) -> _Answering:
        protocol = _Answering()
        protocol.factory = self
        return protocol


class WrongAnswerTests(ResolveTestCase):
    """
    A proxy that answers with the wrong kind of address: a
    L{errors.SOCKSProtocolError}, not a wrong answer.
    """

    async def fake(self, reply: bytes) -> SOCKSProxy:
        """
        A proxy that answers every request with C{reply}.
        """
        port = await listen(self, _AnsweringFactory(reply))
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return SOCKSProxy.fromURL(reactor, f"socks5h://{LOOPBACK}:{address.port}")

    @asyncTest
    async def test_resolveAnsweredWithName(self) -> None:
        """
        RESOLVE answered with a name (ATYP 3).
        """
        proxy = await self.fake(bytes.fromhex("05 00 00 03 04") + b"a.ex\0\0")
        await self.assertLookupFails(proxy.resolve("a.test"), errors.SOCKSProtocolError)

    @asyncTest
    async def test_resolveAnsweredWithNothing(self) -> None:
        """
        RESOLVE answered with 0.0.0.0, as a server that fills in no address.
        """
        proxy = await self.fake(bytes.fromhex("05 00 00 01 00000000 0000"))
        await self.assertLookupFails(proxy.resolve("a.test"), errors.SOCKSProtocolError)

    @asyncTest
    async def test_ptrAnsweredWithAddress(self) -> None:
        """
        RESOLVE_PTR answered with an address.
        """
        proxy = await self.fake(bytes.fromhex("05 00 00 01 c0000201 0000"))
        await self.assertLookupFails(
            proxy.resolvePTR("192.0.2.1"), errors.SOCKSProtocolError
        )

    @asyncTest
    async def test_garbage(self) -> None:
        """
        A reply that is not SOCKS5.
        """
        proxy = await self.fake(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await self.assertLookupFails(proxy.resolve("a.test"), errors.SOCKSProtocolError)
