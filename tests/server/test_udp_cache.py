"""
The UDP relay's per-association caches and its direct sends, over real
loopback UDP sockets: the association listens on a real port of the global
reactor; the client and the targets are plain sockets of this process.
"""

import errno
import ipaddress
import os
import random
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.internet.udp import Port
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from socks_twisted.policy import parseRules
from socks_twisted.server import _udp
from socks_twisted.server._udp import UDPAssociation

from ._fakes import connectClient, makeFactory
from .test_session import GREETING_NO_AUTH

#: Seconds a test waits for the relay to handle what was sent to it.
PATIENCE = 5.0
# UDP ASSOCIATE, client will send from port 0 (unknown)
ASSOCIATE_ANY_PORT = bytes.fromhex("05 03 00 01 00000000 0000")


reactor = cast(IReactorUDP, _globalReactor)
clock = cast(IReactorTime, _globalReactor)


def header(host: str, port: int) -> bytes:
    """
    The SOCKS5 UDP header of a whole datagram to (or from) an IP literal.
    """
    if ":" in host:
        address = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
    else:
        address = b"\x01" + socket.inet_aton(host)
    return b"\x00\x00\x00" + address + struct.pack("!H", port)


def loopbackOnly(address: str, port: int, name: str | None) -> str | None:
    """
    The rule of every association here: nothing leaves the loopback (a
    header of random bytes may name any address).
    """
    return None if ipaddress.ip_address(address).is_loopback else "not loopback"


class Counting:
    """
    Wrap a function, counting its calls.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.function(*args, **kwargs)


class FailingSocket:
    """
    A socket whose sends fail with one errno, as a full or refusing network
    makes them fail.
    """

    def __init__(self, code: int) -> None:
        self.code = code
        self.attempts = 0

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        """
        Fail.
        """
        self.attempts += 1
        raise OSError(self.code, os.strerror(self.code))


class RelayTestCase(TestCase):
    """
    An association on a real loopback port, and sockets to talk to it.
    """

    def listen(self, association: UDPAssociation, interface: str = "127.0.0.1") -> Port:
        """
        Listen on a real loopback port for the test's duration.
        """
        port = reactor.listenUDP(0, association, interface, 65535)
        assert isinstance(port, Port)

        def stop() -> object:
            # The session may have begun closing it already: a second
            # stopListening would close it twice, so wait for the first.
            stopping = getattr(port, "d", None)
            if stopping is not None:
                return stopping
            return port.stopListening() if port.connected else None

        self.addCleanup(stop)
        return port

    def association(self, **kwargs: Any) -> tuple[UDPAssociation, Port]:
        """
        An association for a client on 127.0.0.1, listening.
        """

        def resolve(name: str, family: int) -> "Deferred[list[str]]":
            return succeed(["127.0.0.1"])

        kwargs.setdefault("permit", loopbackOnly)
        association = UDPAssociation("127.0.0.1", 0, socket.AF_INET, resolve, **kwargs)
        return association, self.listen(association)

    def udpSocket(
        self, host: str = "127.0.0.1", port: int = 0, family: int = socket.AF_INET
    ) -> socket.socket:
        """
        A UDP socket bound on loopback, closed after the test.
        """
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind((host, port))
        sock.settimeout(PATIENCE)
        return sock

    async def until(self, done: Callable[[], bool]) -> None:
        """
        Let the reactor run until C{done()}, for at most L{PATIENCE} seconds.
        """
        for _ in range(int(PATIENCE / 0.005)):
            if done():
                return
            await task.deferLater(clock, 0.005, lambda: None)
        self.fail("the relay did not get there in time")

    def seen(self, association: UDPAssociation) -> int:
        """
        The datagrams C{association} has handled: relayed either way, or
        dropped.
        """
        return association.activity() + sum(association.drops.values())

    async def relayed(
        self, association: UDPAssociation, before: int, datagrams: int = 1
    ) -> None:
        """
        Wait until C{association} has handled C{datagrams} more than
        C{before} (what L{seen} said).
        """
        await self.until(lambda: self.seen(association) >= before + datagrams)

    async def exchange(
        self,
        association: UDPAssociation,
        relay: tuple[str, int],
        client: socket.socket,
        target: socket.socket,
        payload: bytes,
    ) -> None:
        """
        The client sends C{payload} to C{target}, which answers it; both
        arrive, the answer with a header naming the target.
        """
        host, port = target.getsockname()[:2]
        before = self.seen(association)
        client.sendto(header(host, port) + payload, relay)
        await self.relayed(association, before)
        data, source = target.recvfrom(65535)
        self.assertEqual(data, payload)
        target.sendto(payload.upper(), source)
        await self.relayed(association, before + 1)
        self.assertEqual(client.recv(65535), header(host, port) + payload.upper())


@contextmanager
def counting(names: list[str]) -> Iterator[dict[str, Counting]]:
    """
    Count the calls of the parsing and encoding functions the relay uses.
    """
    spies = {name: Counting(getattr(_udp, name)) for name in names}
    for name, spy in spies.items():
        setattr(_udp, name, spy)
    try:
        yield spies
    finally:
        for name, spy in spies.items():
            setattr(_udp, name, spy.function)


PARSERS = [
    "normalizeIP",
    "readUDPDatagram",
    "addressTypeOf",
    "isUnspecified",
    "encodeSOCKS5Address",
]


class CacheTests(RelayTestCase):
    """
    A destination is parsed and checked once; a changed one is never served
    from another's entry; the caches stay bounded.
    """

    async def test_parsedOnce(self) -> None:
        """
        The first exchange with a target parses the client's address, the
        destination and the target's address; later exchanges parse
        nothing, and the policy is asked once.
        """
        permit = Counting(loopbackOnly)
        association, port = self.association(permit=permit)
        relay = ("127.0.0.1", port.getHost().port)
        client, target = self.udpSocket(), self.udpSocket()
        with counting(PARSERS) as spies:
            await self.exchange(association, relay, client, target, b"first")
            first = {name: spy.calls for name, spy in spies.items()}
            for i in range(20):
                await self.exchange(association, relay, client, target, b"%d" % i)
            later = {name: spy.calls for name, spy in spies.items()}
        self.assertGreater(first["normalizeIP"], 0)
        self.assertEqual(first["readUDPDatagram"], 1)
        self.assertEqual(later, first)
        self.assertEqual(permit.calls, 1)
        self.assertEqual(association.datagramsFromClient, 21)
        self.assertEqual(association.datagramsToClient, 21)
        self.assertEqual(dict(association.drops), {})

    async def test_otherPortOtherHost(self) -> None:
        """
        After a destination is cached, one on another port of the same
        host, and one on the same port of another host, each get their own
        datagrams, and their answers name them, never the cached one.
        """
        permit = Counting(loopbackOnly)
        association, port = self.association(permit=permit)
        relay = ("127.0.0.1", port.getHost().port)
        client, first = self.udpSocket(), self.udpSocket()
        otherPort = self.udpSocket()
        otherHost = self.udpSocket("127.0.0.2", first.getsockname()[1])
        await self.exchange(association, relay, client, first, b"one")
        await self.exchange(association, relay, client, otherPort, b"two")
        await self.exchange(association, relay, client, otherHost, b"three")
        await self.exchange(association, relay, client, first, b"four")
        await self.exchange(association, relay, client, otherHost, b"five")
        self.assertEqual(permit.calls, 3)
        self.assertEqual(dict(association.drops), {})

    async def test_familyAndFragment(self) -> None:
        """
        The cached IPv4 destination's address as an IPv6 literal is still
        refused on an IPv4 association, and a fragment to it is still
        dropped: neither is taken from the entry.
        """
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        client, target = self.udpSocket(), self.udpSocket()
        await self.exchange(association, relay, client, target, b"cached")
        targetPort = target.getsockname()[1]
        mapped = header("::ffff:127.0.0.1", targetPort)
        fragment = bytearray(header("127.0.0.1", targetPort))
        fragment[2] = 1
        client.sendto(mapped + b"six", relay)
        client.sendto(bytes(fragment) + b"frag", relay)
        client.sendto(header("127.0.0.1", targetPort)[:8], relay)
        await self.relayed(association, 2, 3)
        self.assertEqual(
            dict(association.drops),
            {"address family": 1, "fragmented": 1, "malformed header": 1},
        )

    async def test_name(self) -> None:
        """
        A name is resolved once; once known, datagrams to it are sent from
        the cache of destinations, and checked by the policy once, with the
        name.
        """
        permit = Counting(loopbackOnly)
        association, port = self.association(permit=permit)
        relay = ("127.0.0.1", port.getHost().port)
        client, target = self.udpSocket(), self.udpSocket()
        name = b"echo.example"
        byName = b"\x00\x00\x00\x03" + bytes([len(name)]) + name
        byName += struct.pack("!H", target.getsockname()[1])
        with counting(PARSERS) as spies:
            for i in range(5):
                before = self.seen(association)
                client.sendto(byName + b"%d" % i, relay)
                await self.relayed(association, before)
                self.assertEqual(target.recv(100), b"%d" % i)
        self.assertEqual(spies["readUDPDatagram"].calls, 2)
        self.assertEqual(permit.calls, 1)
        self.assertEqual(dict(association.drops), {})

    async def test_garbage(self) -> None:
        """
        Datagrams of random bytes from the client, and truncated headers of
        every type (a cached destination's among them), are dropped and
        counted, never an error.
        """
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        client, target = self.udpSocket(), self.udpSocket()
        await self.exchange(association, relay, client, target, b"cached")
        whole = header(*target.getsockname())
        name = b"\x00\x00\x00\x03\x05abcde\x00\x07"
        six = header("::1", 7)
        garbage = [b"", b"\x00", b"\x00\x00\x00", b"\x00\x00\x00\x03"]
        garbage += [whole[:n] for n in range(4, len(whole))]
        garbage += [name[:n] for n in range(4, len(name))]
        garbage += [six[:n] for n in range(4, len(six))]
        garbage += [b"\x00\x00\x00\x03\x00\x00\x07", b"\x00\x00\x00\x09abcdefgh"]
        rng = random.Random(1928)
        garbage += [
            b"\x00\x00\x00" + rng.randbytes(rng.randrange(0, 40)) for _ in range(200)
        ]
        before = self.seen(association)
        for datagram in garbage:
            client.sendto(datagram, relay)
            await self.relayed(association, before, 1)
            before = self.seen(association)
        self.assertEqual(self.flushLoggedErrors(), [])
        # A name (resolved to 127.0.0.1 here) with port 0 cannot be sent to.
        expected = {"malformed header", "address family", "denied by policy"}
        expected.add(f"send failed ({os.strerror(errno.EINVAL)})")
        self.assertLessEqual(set(association.drops), expected)
        self.assertGreaterEqual(association.drops["malformed header"], 30)

    async def test_bounded(self) -> None:
        """
        A client spraying destinations, and answers from as many sources,
        leave at most L{_udp.MAX_CACHED} entries in each cache; an evicted
        destination is still relayed (parsed again).
        """
        self.patch(_udp, "MAX_CACHED", 4)
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        client = self.udpSocket()
        targets = [self.udpSocket() for _ in range(10)]
        for i, target in enumerate(targets):
            await self.exchange(association, relay, client, target, b"t%d" % i)
            self.assertLessEqual(len(association._destinations), 4)
            self.assertLessEqual(len(association._replies), 4)
        await self.exchange(association, relay, client, targets[0], b"again")
        self.assertEqual(dict(association.drops), {})

    async def test_sprayBounded(self) -> None:
        """
        Many more destinations than the cache holds, sent to as fast as the
        client can, leave it at its size.
        """
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        client = self.udpSocket()
        # Ports nobody listens on: loopback drops them (without an error on
        # an unconnected socket).
        count = _udp.MAX_CACHED * 3
        for i in range(count):
            client.sendto(header("127.0.0.1", 40000 + i) + b"x", relay)
            if i % 64 == 63:
                # Let the relay read, so that the client's datagrams are not
                # lost to a full receive buffer.
                await self.relayed(association, i + 1 - 64, 64)
        await self.relayed(association, 0, count)
        self.assertEqual(association.datagramsFromClient, count)
        self.assertEqual(len(association._destinations), _udp.MAX_CACHED)

    async def test_evictedTargetChecked(self) -> None:
        """
        A target evicted from the association's targets (there are at most
        L{_udp.MAX_TARGETS}) is not served from the caches: its answers are
        strangers' again, and the next datagram to it is checked again.
        """
        self.patch(_udp, "MAX_TARGETS", 2)
        permit = Counting(loopbackOnly)
        association, port = self.association(permit=permit)
        relay = ("127.0.0.1", port.getHost().port)
        client = self.udpSocket()
        first, second, third = self.udpSocket(), self.udpSocket(), self.udpSocket()
        await self.exchange(association, relay, client, first, b"1")
        await self.exchange(association, relay, client, second, b"2")
        await self.exchange(association, relay, client, third, b"3")
        before = self.seen(association)
        first.sendto(b"late", relay)
        await self.relayed(association, before, 1)
        self.assertEqual(dict(association.drops), {"unknown source": 1})
        await self.exchange(association, relay, client, first, b"4")
        self.assertEqual(permit.calls, 4)

    async def test_ipv6(self) -> None:
        """
        The caches serve an IPv6 association alike.
        """
        try:
            probe = self.udpSocket("::1", family=socket.AF_INET6)
        except OSError:
            self.skipTest("no IPv6 loopback")
        association = UDPAssociation(
            "::1",
            0,
            socket.AF_INET6,
            lambda name, family: succeed(["::1"]),
            permit=loopbackOnly,
        )
        port = self.listen(association, "::1")
        relay = ("::1", port.getHost().port)
        with counting(PARSERS) as spies:
            await self.exchange(association, relay, probe, self.socket6(), b"a")
            first = {name: spy.calls for name, spy in spies.items()}
            target = self.socket6()
            await self.exchange(association, relay, probe, target, b"b")
            second = {name: spy.calls for name, spy in spies.items()}
            await self.exchange(association, relay, probe, target, b"c")
            third = {name: spy.calls for name, spy in spies.items()}
        self.assertGreater(second["normalizeIP"], first["normalizeIP"])
        self.assertEqual(third, second)

    def socket6(self) -> socket.socket:
        return self.udpSocket("::1", family=socket.AF_INET6)


class SendErrorTests(RelayTestCase):
    """
    A send the system refuses is a counted drop, never an exception.
    """

    async def test_tooLongForTheHeader(self) -> None:
        """
        An answer of the largest IPv4 datagram cannot take the header on its
        way to the client: dropped as too long (EMSGSIZE), the next answer
        gets through.
        """
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        client, target = self.udpSocket(), self.udpSocket()
        await self.exchange(association, relay, client, target, b"hi")
        before = self.seen(association)
        target.sendto(b"x" * 65507, relay)
        await self.relayed(association, before, 1)
        self.assertEqual(dict(association.drops), {"send failed (Message too long)": 1})
        await self.exchange(association, relay, client, target, b"after")
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_tooLongThroughTwisted(self) -> None:
        """
        Without the socket (sent through Twisted's C{write}, which turns
        EMSGSIZE into L{MessageLengthError}), the same is the same drop.
        """
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        association._socket = None
        client, target = self.udpSocket(), self.udpSocket()
        await self.exchange(association, relay, client, target, b"hi")
        before = self.seen(association)
        target.sendto(b"x" * 65507, relay)
        await self.relayed(association, before, 1)
        self.assertEqual(dict(association.drops), {"send failed (Message too long)": 1})
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_sendErrors(self) -> None:
        """
        ENOBUFS, EAGAIN and ECONNREFUSED from the socket, either way, are
        drops counted by their reason; the datagrams are still counted as
        relayed, as before.
        """
        association, port = self.association()
        relay = ("127.0.0.1", port.getHost().port)
        client, target = self.udpSocket(), self.udpSocket()
        await self.exchange(association, relay, client, target, b"hi")
        host, targetPort = target.getsockname()
        expected = {}
        for code in (errno.ENOBUFS, errno.EAGAIN, errno.ECONNREFUSED):
            failing = FailingSocket(code)
            self.patch(association, "_socket", failing)
            before = self.seen(association)
            client.sendto(header(host, targetPort) + b"out", relay)
            target.sendto(b"back", relay)
            await self.relayed(association, before, 2)
            self.assertEqual(failing.attempts, 2)
            expected[f"send failed ({os.strerror(code)})"] = 2
        self.assertEqual(dict(association.drops), expected)
        self.assertEqual(association.datagramsFromClient, 4)
        self.assertEqual(association.datagramsToClient, 4)
        self.assertEqual(self.flushLoggedErrors(), [])


class ReloadTests(RelayTestCase):
    """
    Rules reloaded while associations are open: the caches are the
    association's own, so a destination one association cached is decided
    afresh, by the new rules, for the next association.
    """

    def open(self, factory: Any) -> tuple[UDPAssociation, tuple[str, int]]:
        """
        A UDP ASSOCIATE session on C{factory}; its association and relay.
        """
        before = set(self.opened)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + ASSOCIATE_ANY_PORT)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        [(port, association)] = [p for p in self.opened if p not in before]
        return association, ("127.0.0.1", port.getHost().port)

    def factory(self) -> Any:
        self.opened: list[tuple[Port, UDPAssociation]] = []

        def listenUDP(interface: str, association: UDPAssociation) -> Port:
            port = self.listen(association, interface)
            self.opened.append((port, association))
            return port

        factory, _, _ = makeFactory(listenUDP=listenUDP)
        return factory

    async def test_newRulesDenyCachedDestination(self) -> None:
        """
        After rules denying a destination one association relays to (and
        has cached) are loaded, a new association's datagrams to it are
        dropped as denied; the open association keeps the rules it was
        decided by, as every open session does on a reload.
        """
        factory = self.factory()
        client, target = self.udpSocket(), self.udpSocket("127.0.0.2")
        old, oldRelay = self.open(factory)
        await self.exchange(old, oldRelay, client, target, b"allowed")
        factory.setRules(
            parseRules([{"action": "deny", "to": ["127.0.0.2/32"]}], {}, "t.toml"),
            {},
        )
        new, newRelay = self.open(factory)
        newClient = self.udpSocket()
        host, port = target.getsockname()
        for _ in range(3):
            newClient.sendto(header(host, port) + b"denied", newRelay)
        await self.relayed(new, 0, 3)
        self.assertEqual(dict(new.drops), {"denied by policy": 3})
        self.assertEqual(new.datagramsFromClient, 0)
        await self.exchange(old, oldRelay, client, target, b"still")
        self.assertEqual(dict(old.drops), {})
