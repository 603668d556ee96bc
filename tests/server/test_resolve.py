"""
Tor's RESOLVE and RESOLVE_PTR on the server, on fake transports with a
test resolver: the replies (as Tor's connection_ap_handshake_socks_resolved
writes them: BND.PORT 0, 0x04 when there is no answer), the rules, the
switch that turns them off, the deadlines, and hostile requests.
"""

import socket
import threading
from dataclasses import replace
from typing import Any, cast

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from socks_twisted.policy import parseRules
from socks_twisted.server import SOCKSServerFactory, SOCKSServerProtocol
from socks_twisted.server._limits import LimitSettings
from socks_twisted.server._metrics import ServerMetrics
from socks_twisted.server._resolve import ReverseResolver, nameOf

from ._fakes import (
    CLIENT_ADDRESS,
    FakeListeners,
    HalfCloseTransport,
    connectClient,
    makeFactory,
)
from .test_session import CHOSE_NO_AUTH, GREETING_NO_AUTH, LogCapture, failure5

#: RESOLVE localhost, port 0, as tor-resolve -5 sends it.
RESOLVE_LOCALHOST = bytes.fromhex("05 f0 00 03 09") + b"localhost" + b"\0\0"
#: RESOLVE_PTR 127.0.0.1, as tor-resolve -x sends it.
PTR_LOOPBACK = bytes.fromhex("05 f1 00 01 7f000001 0000")
#: SOCKS4a RESOLVE localhost, as tor-resolve -4 sends it.
SOCKS4A_RESOLVE = bytes.fromhex("04 f0 0000 00000001 00") + b"localhost\0"
SOCKS4_REJECTED = bytes.fromhex("00 5b 0000 00000000")


def resolveRequest(name: bytes) -> bytes:
    """
    A SOCKS5 RESOLVE for C{name}, port 0.
    """
    return bytes.fromhex("05 f0 00 03") + bytes([len(name)]) + name + b"\0\0"


def nameReply(name: bytes) -> bytes:
    """
    A successful RESOLVE_PTR reply naming C{name}: ATYP 3, port 0.
    """
    return bytes.fromhex("05 00 00 03") + bytes([len(name)]) + name + b"\0\0"


class FakeReverse:
    """
    Stands in for the factory's C{reverse}: answers from C{names}, fails
    with C{socket.gaierror} for others, or, for addresses in C{pending},
    hands out a L{Deferred<defer.Deferred>} the test fires.
    """

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.names = names or {}
        self.asked: list[str] = []
        self.pending: dict[str, defer.Deferred[str]] = {}
        self.cancelled: list[str] = []

    def hold(self, address: str) -> None:
        """
        Make the lookup of C{address} wait for the test.
        """
        self.pending[address] = defer.Deferred(lambda _: self.cancelled.append(address))

    def __call__(self, address: str) -> "defer.Deferred[str]":
        self.asked.append(address)
        if address in self.pending:
            return self.pending[address]
        if address in self.names:
            return defer.succeed(self.names[address])
        return defer.fail(socket.gaierror(socket.EAI_NONAME, "Name not known"))


class ResolveTestCase(SynchronousTestCase):
    """
    A factory with a test resolver (C{self.listeners.names}) and reverse
    resolver (C{self.reverse}), and sessions on it.
    """

    def setUp(self) -> None:
        self.log = LogCapture(self)
        self.listeners = FakeListeners(
            names={
                "localhost": ["127.0.0.1"],
                "both.test": ["192.0.2.1"],
                "v6only.test": [],
                "mixed.test": ["127.0.0.2", "192.0.2.2"],
            }
        )
        self.reverse = FakeReverse({"127.0.0.1": "localhost"})

    def serve(
        self, rules: list[dict[str, object]] | None = None, **settings: Any
    ) -> SOCKSServerFactory:
        """
        A factory with C{rules} (the tables of a file) and C{settings}.
        """
        names = self.listeners.names
        v6 = {"both.test": ["2001:db8::1"], "v6only.test": ["2001:db8::2"]}

        def resolve(name: str, family: int) -> "defer.Deferred[list[str]]":
            self.listeners.resolved.append((name, family))
            if family == socket.AF_INET6:
                found = v6.get(name, [])
            else:
                found = names.get(name, [])
            if found:
                return defer.succeed(found)
            return defer.fail(error.DNSLookupError(name))

        factory, self.reactor, self.dialler = makeFactory(
            resolve=settings.pop("resolve", resolve),
            reverse=self.reverse,
            **settings,
        )
        if rules is not None:
            factory.setRules(parseRules(rules, {}, "test.toml"), {})
        return factory

    def ask(
        self, factory: SOCKSServerFactory, request: bytes
    ) -> tuple[SOCKSServerProtocol, HalfCloseTransport]:
        """
        A SOCKS5 client without authentication sends C{request}.
        """
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH)
        self.assertEqual(transport.value(), CHOSE_NO_AUTH)
        transport.clear()
        protocol.dataReceived(request)
        return protocol, transport

    def end(self, protocol: SOCKSServerProtocol) -> dict[str, Any]:
        """
        Close the client's side and return the session's one log event.
        """
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = self.log.sessionEvents()
        return dict(event)


class ResolveTests(ResolveTestCase):
    """
    RESOLVE (0xF0) over SOCKS5, SOCKS4a and SOCKS4.
    """

    def test_socks5IPv4(self) -> None:
        """
        The answer is the name's IPv4 address in BND.ADDR (ATYP 1), port 0;
        the session then closes its side (no relay), and logs the command,
        the answer and success.
        """
        protocol, transport = self.ask(self.serve(), RESOLVE_LOCALHOST)
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 7f000001 0000"))
        self.assertTrue(transport.writeShut)
        self.assertEqual(self.dialler.attempts, [])
        event = self.end(protocol)
        self.assertEqual(event["command"], "RESOLVE")
        self.assertEqual(event["target"], "localhost:0")
        self.assertEqual(event["reply"], 0)
        self.assertEqual(event["outcome"], "success")
        self.assertIn("answered 127.0.0.1", event["reason"])

    def test_bothFamiliesAskedIPv4First(self) -> None:
        """
        SOCKS5 asks for both families; IPv4 is answered when there is one.
        """
        _, transport = self.ask(self.serve(), resolveRequest(b"both.test"))
        self.assertEqual(
            sorted(self.listeners.resolved),
            sorted([("both.test", socket.AF_INET), ("both.test", socket.AF_INET6)]),
        )
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 c0000201 0000"))

    def test_ipv6Answer(self) -> None:
        """
        A name with IPv6 addresses only is answered ATYP 4.
        """
        _, transport = self.ask(self.serve(), resolveRequest(b"v6only.test"))
        self.assertEqual(
            transport.value(),
            bytes.fromhex("05 00 00 04 20010db8000000000000000000000002 0000"),
        )

    def test_noAnswer(self) -> None:
        """
        A name that resolves to nothing gets 0x04, host unreachable, as Tor
        answers it.
        """
        protocol, transport = self.ask(self.serve(), resolveRequest(b"nothing.test"))
        self.assertEqual(transport.value(), failure5(4))
        event = self.end(protocol)
        self.assertEqual(event["outcome"], "unreachable")
        self.assertIn("resolving nothing.test failed", event["reason"])

    def test_addressIsItsOwnAnswer(self) -> None:
        """
        An address is answered as itself, without a lookup (Tor does the
        same).
        """
        request = bytes.fromhex("05 f0 00 04 20010db8000000000000000000000009 0000")
        _, transport = self.ask(self.serve(), request)
        self.assertEqual(
            transport.value(),
            bytes.fromhex("05 00 00 04 20010db8000000000000000000000009 0000"),
        )
        self.assertEqual(self.listeners.resolved, [])

    def test_unspecified(self) -> None:
        """
        0.0.0.0 is no answer: a name that resolves only to it (as DNS
        blocklists answer), and the address itself, get 0x04.
        """
        self.listeners.names["blocked.test"] = ["0.0.0.0"]
        _, transport = self.ask(self.serve(), resolveRequest(b"blocked.test"))
        self.assertEqual(transport.value(), failure5(4))
        request = bytes.fromhex("05 f0 00 01 00000000 0000")
        _, transport = self.ask(self.serve(), request)
        self.assertEqual(transport.value(), failure5(4))

    def test_socks4a(self) -> None:
        """
        tor-resolve -4's request: only IPv4 is asked for, and the answer goes
        in DSTIP, port 0.
        """
        protocol, transport = connectClient(self.serve())
        protocol.dataReceived(SOCKS4A_RESOLVE)
        self.assertEqual(transport.value(), bytes.fromhex("00 5a 0000 7f000001"))
        self.assertEqual(self.listeners.resolved, [("localhost", socket.AF_INET)])
        event = self.end(protocol)
        self.assertEqual((event["version"], event["command"]), ("4a", "RESOLVE"))

    def test_socks4aIPv6Only(self) -> None:
        """
        SOCKS4 cannot carry an IPv6 answer: a name with IPv6 addresses only
        is refused (91).
        """
        protocol, transport = connectClient(self.serve())
        protocol.dataReceived(
            bytes.fromhex("04 f0 0000 00000001 00") + b"v6only.test\0"
        )
        self.assertEqual(transport.value(), SOCKS4_REJECTED)

    def test_socks4Address(self) -> None:
        """
        Plain SOCKS4 RESOLVE of an address answers the address.
        """
        protocol, transport = connectClient(self.serve())
        protocol.dataReceived(bytes.fromhex("04 f0 0000 c0000209 00"))
        self.assertEqual(transport.value(), bytes.fromhex("00 5a 0000 c0000209"))

    def test_pipelinedBytesDropped(self) -> None:
        """
        Bytes after the request are not relayed anywhere: nothing follows a
        lookup, and no target is dialled.
        """
        _, transport = self.ask(self.serve(), RESOLVE_LOCALHOST + b"GET / HTTP/1.0")
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 7f000001 0000"))
        self.assertEqual(self.dialler.attempts, [])

    def test_badName(self) -> None:
        """
        A name the resolver cannot take at all gets 0x04.
        """

        def refuse(name: str, family: int) -> "defer.Deferred[list[str]]":
            raise ValueError("label empty or too long")

        _, transport = self.ask(self.serve(resolve=refuse), resolveRequest(b"a..b"))
        self.assertEqual(transport.value(), failure5(4))

    def test_metricsLabel(self) -> None:
        """
        The metrics count the session under command C{resolve}.
        """
        metrics = ServerMetrics(processCollectors=False)
        protocol, _ = self.ask(self.serve(metrics=metrics), RESOLVE_LOCALHOST)
        self.end(protocol)
        value = metrics.registry.get_sample_value(
            "socks_sessions_total",
            {"version": "5", "command": "resolve", "outcome": "success"},
        )
        self.assertEqual(value, 1.0)


class ResolvePTRTests(ResolveTestCase):
    """
    RESOLVE_PTR (0xF1): the name of an address, ATYP 3.
    """

    def test_name(self) -> None:
        """
        The answer is the name, ATYP 3, port 0.
        """
        protocol, transport = self.ask(self.serve(), PTR_LOOPBACK)
        self.assertEqual(transport.value(), nameReply(b"localhost"))
        self.assertEqual(self.reverse.asked, ["127.0.0.1"])
        event = self.end(protocol)
        self.assertEqual(event["command"], "RESOLVE_PTR")
        self.assertEqual(event["outcome"], "success")

    def test_ipv6(self) -> None:
        """
        An IPv6 address is looked up in its compressed form.
        """
        self.reverse.names["2001:db8::1"] = "v6.test"
        request = bytes.fromhex("05 f1 00 04 20010db8000000000000000000000001 0000")
        _, transport = self.ask(self.serve(), request)
        self.assertEqual(transport.value(), nameReply(b"v6.test"))

    def test_noName(self) -> None:
        """
        An address without a name gets 0x04.
        """
        request = bytes.fromhex("05 f1 00 01 c0000263 0000")
        protocol, transport = self.ask(self.serve(), request)
        self.assertEqual(transport.value(), failure5(4))
        self.assertIn("no name for 192.0.2.99", self.end(protocol)["reason"])

    def test_nameTarget(self) -> None:
        """
        RESOLVE_PTR of a name (ATYP 3) gets 0x08, address type not
        supported, without a lookup.
        """
        _, transport = self.ask(
            self.serve(), bytes.fromhex("05 f1 00 03 04") + b"a.ex\0\0"
        )
        self.assertEqual(transport.value(), failure5(8))
        self.assertEqual(self.reverse.asked, [])

    def test_unsendableName(self) -> None:
        """
        A name too long for ATYP 3 (more than 255 bytes) gets 0x04.
        """
        self.reverse.names["192.0.2.5"] = "a" * 63 + ("." + "b" * 63) * 3 + ".c"
        request = bytes.fromhex("05 f1 00 01 c0000205 0000")
        _, transport = self.ask(self.serve(), request)
        self.assertEqual(transport.value(), failure5(4))

    def test_lookupRaisesUnexpectedly(self) -> None:
        """
        A reverse resolver that fails with something other than a lookup
        error gets 0x01, and the failure is logged.
        """

        def broken(address: str) -> "defer.Deferred[str]":
            return defer.fail(RuntimeError("bug"))

        factory = self.serve()
        factory.network = replace(factory.network, reverse=broken)
        _, transport = self.ask(factory, bytes.fromhex("05 f1 00 01 c0000206 0000"))
        self.assertEqual(transport.value(), failure5(1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RulesTests(ResolveTestCase):
    """
    The rules decide lookups as they decide CONNECT.
    """

    def test_everyAddressDenied(self) -> None:
        """
        A name whose every address is denied is not resolved for the
        client: 0x02, naming the rule.
        """
        factory = self.serve([{"action": "deny", "to": ["loopback"]}])
        protocol, transport = self.ask(factory, RESOLVE_LOCALHOST)
        self.assertEqual(transport.value(), failure5(2))
        event = self.end(protocol)
        self.assertEqual(event["outcome"], "denied")
        self.assertIn("every address of localhost denied by rule 1", event["reason"])
        self.assertEqual(event["rule"], "rule 1")

    def test_deniedAddressSkipped(self) -> None:
        """
        An allowed address is answered when others are denied.
        """
        factory = self.serve([{"action": "deny", "to": ["loopback"]}])
        _, transport = self.ask(factory, resolveRequest(b"mixed.test"))
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 c0000202 0000"))

    def test_nameDeniedBeforeLookup(self) -> None:
        """
        A name a rule denies by name is refused without a lookup.
        """
        factory = self.serve([{"action": "deny", "to": [".test"]}])
        _, transport = self.ask(factory, resolveRequest(b"both.test"))
        self.assertEqual(transport.value(), failure5(2))
        self.assertEqual(self.listeners.resolved, [])

    def test_commandRule(self) -> None:
        """
        Rules name the commands C{resolve} and C{resolve_ptr}: a rule for
        CONNECT only does not apply to them, and one for them only does not
        apply to CONNECT.
        """
        factory = self.serve(
            [
                {"action": "allow", "commands": ["connect"]},
                {"action": "deny", "commands": ["resolve_ptr"]},
                {"action": "allow", "commands": ["resolve"]},
                {"action": "deny"},
            ]
        )
        _, transport = self.ask(factory, RESOLVE_LOCALHOST)
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 7f000001 0000"))
        _, transport = self.ask(factory, PTR_LOOPBACK)
        self.assertEqual(transport.value(), failure5(2))
        self.assertEqual(self.reverse.asked, [])

    def test_ptrAddressDenied(self) -> None:
        """
        RESOLVE_PTR of a denied address is refused before any lookup.
        """
        factory = self.serve([{"action": "deny", "to": ["127.0.0.0/8"]}])
        _, transport = self.ask(factory, PTR_LOOPBACK)
        self.assertEqual(transport.value(), failure5(2))
        self.assertEqual(self.reverse.asked, [])

    def test_ptrNameDenied(self) -> None:
        """
        A name the rules deny is not told: 0x02 after the lookup.
        """
        self.reverse.names["192.0.2.7"] = "db.corp.test"
        factory = self.serve([{"action": "deny", "to": [".corp.test"]}])
        request = bytes.fromhex("05 f1 00 01 c0000207 0000")
        protocol, transport = self.ask(factory, request)
        self.assertEqual(transport.value(), failure5(2))
        self.assertIn("db.corp.test", self.end(protocol)["reason"])

    def test_socks4WithAuthentication(self) -> None:
        """
        A server that requires authentication refuses SOCKS4 RESOLVE as it
        refuses SOCKS4 CONNECT (no password).
        """
        factory = self.serve(users={b"fred": b"secret"})
        protocol, transport = connectClient(factory)
        protocol.dataReceived(SOCKS4A_RESOLVE)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertEqual(self.listeners.resolved, [])

    def test_authenticatedSOCKS5(self) -> None:
        """
        After RFC 1929 authentication, RESOLVE is served.
        """
        factory = self.serve(users={b"fred": b"secret"})
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01 02"))
        protocol.dataReceived(b"\x01\x04fred\x06secret")
        self.assertEqual(transport.value(), b"\x05\x02\x01\x00")
        transport.clear()
        protocol.dataReceived(RESOLVE_LOCALHOST)
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 7f000001 0000"))


class LimitTests(ResolveTestCase):
    """
    Lookups count against the limits as any session does.
    """

    def test_sessionsPerClient(self) -> None:
        """
        With one session per client, a client whose lookup is still running
        cannot open another; once it is answered, it can.
        """
        self.reverse.hold("127.0.0.1")
        factory = self.serve(limits=LimitSettings(sessionsPerClient=1))
        protocol, transport = self.ask(factory, PTR_LOOPBACK)
        self.assertIsNone(factory.buildProtocol(CLIENT_ADDRESS))
        self.reverse.pending["127.0.0.1"].callback("localhost")
        self.assertEqual(transport.value(), nameReply(b"localhost"))
        self.end(protocol)
        self.assertIsNotNone(factory.buildProtocol(CLIENT_ADDRESS))


class TurnedOffTests(ResolveTestCase):
    """
    C{torResolve=False} (C{--no-tor-resolve}): the commands are unknown.
    """

    def test_socks5(self) -> None:
        """
        RESOLVE and RESOLVE_PTR get 0x07, command not supported, and nothing
        is looked up.
        """
        for request in (RESOLVE_LOCALHOST, PTR_LOOPBACK):
            _, transport = self.ask(self.serve(torResolve=False), request)
            self.assertEqual(transport.value(), failure5(7))
        self.assertEqual(self.listeners.resolved, [])
        self.assertEqual(self.reverse.asked, [])

    def test_socks4(self) -> None:
        """
        SOCKS4a RESOLVE gets 91.
        """
        protocol, transport = connectClient(self.serve(torResolve=False))
        protocol.dataReceived(SOCKS4A_RESOLVE)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)

    def test_connectStillServed(self) -> None:
        """
        CONNECT is unaffected.
        """
        self.ask(
            self.serve(torResolve=False), bytes.fromhex("05 01 00 01 7f000001 0050")
        )
        self.assertEqual(len(self.dialler.attempts), 1)


class DeadlineTests(ResolveTestCase):
    """
    Lookups that take too long, and clients that leave.
    """

    def test_resolveTimeout(self) -> None:
        """
        No answer within C{connectTimeout}: 0x06, and the lookup is
        cancelled.
        """
        lookups: list[defer.Deferred[list[str]]] = []

        def slow(name: str, family: int) -> "defer.Deferred[list[str]]":
            lookups.append(defer.Deferred())
            return lookups[-1]

        factory = self.serve(resolve=slow, connectTimeout=5.0)
        protocol, transport = self.ask(factory, RESOLVE_LOCALHOST)
        self.reactor.advance(4.9)
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(0.2)
        self.assertEqual(transport.value(), failure5(6))
        self.assertTrue(all(d.called for d in lookups))
        self.assertIn("no answer within 5 s", self.end(protocol)["reason"])

    def test_ptrTimeout(self) -> None:
        """
        A reverse lookup with no answer within C{connectTimeout}: 0x06.
        """
        self.reverse.hold("127.0.0.1")
        factory = self.serve(connectTimeout=5.0)
        _, transport = self.ask(factory, PTR_LOOPBACK)
        self.reactor.advance(5.1)
        self.assertEqual(transport.value(), failure5(6))
        self.assertEqual(self.reverse.cancelled, ["127.0.0.1"])

    def test_clientLeaves(self) -> None:
        """
        A client that leaves while its lookup runs: the lookup is cancelled,
        nothing is written, the log says it left while resolving.
        """
        self.reverse.hold("127.0.0.1")
        protocol, transport = self.ask(self.serve(), PTR_LOOPBACK)
        event = self.end(protocol)
        self.assertEqual(self.reverse.cancelled, ["127.0.0.1"])
        self.assertEqual(transport.value(), b"")
        self.assertEqual(event["outcome"], "client_left")
        self.assertIn("resolving", event["reason"])
        self.assertEqual(self.flushLoggedErrors(), [])


class HostileTests(ResolveTestCase):
    """
    Malformed and oversized lookups close with the right code.
    """

    def test_socks4aNameTooLong(self) -> None:
        """
        A SOCKS4a RESOLVE name longer than 255 bytes gets 91 as soon as the
        256th byte arrives without its NUL.
        """
        protocol, transport = connectClient(self.serve())
        protocol.dataReceived(bytes.fromhex("04 f0 0000 00000001 00") + b"a" * 256)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertEqual(self.listeners.resolved, [])

    def test_emptyName(self) -> None:
        """
        A zero-length name gets 0x01, general failure.
        """
        _, transport = self.ask(self.serve(), bytes.fromhex("05 f0 00 03 00 0000"))
        self.assertEqual(transport.value(), failure5(1))

    def test_socks4ResolvePTR(self) -> None:
        """
        RESOLVE_PTR over SOCKS4 (which Tor does not take) gets 91.
        """
        protocol, transport = connectClient(self.serve())
        protocol.dataReceived(bytes.fromhex("04 f1 0000 7f000001 00"))
        self.assertEqual(transport.value(), SOCKS4_REJECTED)

    def test_unknownAddressType(self) -> None:
        """
        RESOLVE with ATYP 2 gets 0x08.
        """
        _, transport = self.ask(self.serve(), bytes.fromhex("05 f0 00 02 7f000001"))
        self.assertEqual(transport.value(), failure5(8))

    def test_nulInName(self) -> None:
        """
        A name with a NUL byte is refused (0x04) before any lookup.
        """
        _, transport = self.ask(self.serve(), resolveRequest(b"local\0host"))
        self.assertEqual(transport.value(), failure5(4))
        self.assertEqual(self.listeners.resolved, [])


class ReverseResolverTests(TestCase):
    """
    L{ReverseResolver}: blocking lookups in a thread pool, a few at a time.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = cast(IReactorFromThreads, reactor)
        self.pool = ThreadPool(minthreads=0, maxthreads=4, name="test-reverse")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    async def test_lookup(self) -> None:
        """
        The answer of the lookup function, computed in a thread.
        """
        threadsSeen: list[threading.Thread] = []

        def lookup(address: str) -> str:
            threadsSeen.append(threading.current_thread())
            return f"name-of-{address}"

        resolver = ReverseResolver(self.reactor, self.pool, lookup=lookup)
        self.assertEqual(await resolver("192.0.2.1"), "name-of-192.0.2.1")
        self.assertIsNot(threadsSeen[0], threading.main_thread())

    async def test_failure(self) -> None:
        """
        The lookup's exception fails the result.
        """

        def lookup(address: str) -> str:
            raise socket.gaierror(socket.EAI_NONAME, "Name not known")

        resolver = ReverseResolver(self.reactor, self.pool, lookup=lookup)
        with self.assertRaises(socket.gaierror):
            await resolver("192.0.2.1")

    async def test_limitAndCancel(self) -> None:
        """
        Beyond C{lookups} at once, a lookup waits for a turn; cancelled while
        waiting, it never runs.  A running lookup that is cancelled keeps its
        turn until its thread finishes.
        """
        release = threading.Event()
        started: list[str] = []

        def lookup(address: str) -> str:
            started.append(address)
            release.wait(10)
            return address

        resolver = ReverseResolver(self.reactor, self.pool, lookups=1, lookup=lookup)
        first = resolver("192.0.2.1")
        second = resolver("192.0.2.2")
        third = resolver("192.0.2.3")
        second.cancel()
        self.assertFailure(second, defer.CancelledError)
        first.cancel()
        self.assertFailure(first, defer.CancelledError)
        await first
        await second
        self.assertFalse(third.called)  # the first thread still holds the turn
        release.set()
        self.assertEqual(await third, "192.0.2.3")
        self.assertEqual(started, ["192.0.2.1", "192.0.2.3"])

    def test_nameOfLoopback(self) -> None:
        """
        L{nameOf} gives what C{getnameinfo} gives for 127.0.0.1 here.
        """
        expected, _ = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)
        self.assertEqual(nameOf("127.0.0.1"), expected)


class DefaultReverseTests(SynchronousTestCase):
    """
    The factory's default reverse resolver starts no thread pool until the
    first RESOLVE_PTR.
    """

    def test_lazy(self) -> None:
        """
        A factory on a reactor without threads (the memory reactor) is made
        and serves RESOLVE without asking for a thread pool.
        """
        reactor = MemoryReactorClock()
        factory = SOCKSServerFactory(reactor, resolve=FakeListeners().resolve)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + RESOLVE_LOCALHOST)
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(4))
