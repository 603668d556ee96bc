"""
Access rules, admission limits and bandwidth caps through the server
factory, on a fake reactor, transports, dialler and listeners: every point
where the rules are checked (accept, request, each address of a name, the
address reached, BIND peers, UDP destinations), the default rules, limits
at accept and after login, throttling, and reloads.  Wire bytes are written
by hand from RFC 1928, RFC 1929 and the SOCKS4/4a texts.
"""

from collections.abc import Mapping
from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.policy import DENY_SELF, parseRules
from socks_twisted.server import SOCKSServerFactory, SOCKSServerProtocol
from socks_twisted.server._limits import FIRST_BACK_OFF, LimitSettings
from socks_twisted.server._settings import ServerSettings
from socks_twisted.server._target import TargetProtocol
from socks_twisted.server._udp import UDPAssociation

from ._fakes import (
    Attempt,
    FakeDialler,
    FakeListeners,
    HalfCloseTransport,
    connectClient,
    makeFactory,
)
from .test_session import CHOSE_NO_AUTH, GREETING_NO_AUTH, LogCapture, failure5

# A client on the documentation network, allowed by `from` rules below.
TEST_NET_CLIENT = IPv4Address("TCP", "192.0.2.1", 50000)
OTHER_CLIENT = IPv4Address("TCP", "198.51.100.1", 50000)

# CONNECT 10.1.2.3:80
CONNECT_10_1_2_3 = bytes.fromhex("05 01 00 01 0a010203 0050")
# CONNECT 192.0.2.5:80
CONNECT_192_0_2_5 = bytes.fromhex("05 01 00 01 c0000205 0050")
# CONNECT 127.0.0.1:80
CONNECT_LOOPBACK_80 = bytes.fromhex("05 01 00 01 7f000001 0050")
# CONNECT 127.0.0.1:1080, the server's own address in these tests
CONNECT_OWN = bytes.fromhex("05 01 00 01 7f000001 0438")
# CONNECT example.com:80 (11 bytes of name)
CONNECT_EXAMPLE_COM = bytes.fromhex("05 01 00 03 0b 6578616d706c652e636f6d 0050")
# CONNECT example.org:443
CONNECT_EXAMPLE_ORG = bytes.fromhex("05 01 00 03 0b 6578616d706c652e6f7267 01bb")
# success, BND 127.0.0.1:40000 (0x9c40): where the fake attempt is bound
SUCCESS_BND = bytes.fromhex("05 00 00 01 7f000001 9c40")
# SOCKS4 CONNECT 10.1.2.3:80, empty user ID
SOCKS4_CONNECT_10_1_2_3 = bytes.fromhex("04 01 0050 0a010203 00")
# SOCKS4 CONNECT 192.0.2.5:80, empty user ID
SOCKS4_CONNECT_192_0_2_5 = bytes.fromhex("04 01 0050 c0000205 00")
# SOCKS4a CONNECT example.com:80, empty user ID
SOCKS4A_CONNECT_EXAMPLE_COM = bytes.fromhex(
    "04 01 0050 00000001 00 6578616d706c652e636f6d 00"
)
SOCKS4_GRANTED_BND = bytes.fromhex("00 5a 9c40 7f000001")
SOCKS4_REJECTED = bytes.fromhex("00 5b 0000 00000000")
# BIND expecting the peer from 192.0.2.7
BIND_192_0_2_7 = bytes.fromhex("05 02 00 01 c0000207 0000")
# BIND from any peer
BIND_ANY = bytes.fromhex("05 02 00 01 00000000 0000")
# first BIND reply: listening on 127.0.0.1:41000 (0xa028)
BIND_FIRST_REPLY = bytes.fromhex("05 00 00 01 7f000001 a028")
# UDP ASSOCIATE, client port unknown
UDP_ASSOCIATE = bytes.fromhex("05 03 00 01 00000000 0000")
# the UDP association's reply: 127.0.0.1:42000 (0xa410)
UDP_REPLY = bytes.fromhex("05 00 00 01 7f000001 a410")
# UDP headers: RSV 0000, FRAG 00, then the destination
TO_192_0_2_1_DNS = bytes.fromhex("0000 00 01 c0000201 0035")
TO_198_51_100_1_DNS = bytes.fromhex("0000 00 01 c6336401 0035")
# denied.example:53 (14 bytes of name)
TO_DENIED_EXAMPLE_DNS = bytes.fromhex("0000 00 03 0e 64656e6965642e6578616d706c65 0035")
CLIENT_UDP = ("127.0.0.1", 6000)

# RFC 1929: the greeting offering username/password, and the server's choice
GREETING_USERPASS = bytes.fromhex("05 01 02")
CHOSE_USERPASS = bytes.fromhex("05 02")
AUTH_OK = bytes.fromhex("01 00")
AUTH_FAILED = bytes.fromhex("01 01")
USERS = {b"alice": b"pw", b"bob": b"pw"}
GROUPS: Mapping[str, frozenset[str]] = {"staff": frozenset({"alice"})}


def login(user: bytes, password: bytes) -> bytes:
    """
    An RFC 1929 username/password request: VER 01, ULEN, UNAME, PLEN, PASSWD.
    """
    return bytes([1, len(user)]) + user + bytes([len(password)]) + password


def closeSession(protocol: SOCKSServerProtocol) -> None:
    """
    The client's connection ends cleanly.
    """
    protocol.connectionLost(Failure(error.ConnectionDone()))


class AccessTestMixin:
    """
    A factory with rules, and the client sessions run against it.
    """

    def serve(
        self,
        rules: list[dict[str, object]] | None = None,
        *,
        groups: Mapping[str, frozenset[str]] = GROUPS,
        publicListener: bool = False,
        **settings: Any,
    ) -> SOCKSServerFactory:
        """
        A factory on a fake reactor and dialler (C{self.reactor},
        C{self.dialler}) with C{rules} (the tables of a file), and a log
        capture (C{self.log}).
        """
        assert isinstance(self, SynchronousTestCase)
        self.log = LogCapture(self)
        factory, self.reactor, self.dialler = makeFactory(**settings)
        if rules is not None:
            factory.setRules(
                parseRules(rules, groups, "test.toml"),
                groups,
                publicListener=publicListener,
            )
        return factory

    def request(
        self,
        factory: SOCKSServerFactory,
        request: bytes,
        client: IPv4Address = TEST_NET_CLIENT,
    ) -> tuple[SOCKSServerProtocol, HalfCloseTransport]:
        """
        A SOCKS5 client without authentication sends C{request}; the
        transport holds what came after the method selection.
        """
        assert isinstance(self, SynchronousTestCase)
        protocol, transport = connectClient(factory, client)
        protocol.dataReceived(GREETING_NO_AUTH)
        self.assertEqual(transport.value(), CHOSE_NO_AUTH)
        transport.clear()
        protocol.dataReceived(request)
        return protocol, transport

    def loggedIn(
        self,
        factory: SOCKSServerFactory,
        user: bytes,
        password: bytes = b"pw",
        client: IPv4Address = TEST_NET_CLIENT,
    ) -> tuple[SOCKSServerProtocol, HalfCloseTransport]:
        """
        A SOCKS5 client logs in with RFC 1929; the transport holds the
        status reply.
        """
        assert isinstance(self, SynchronousTestCase)
        protocol, transport = connectClient(factory, client)
        protocol.dataReceived(GREETING_USERPASS)
        self.assertEqual(transport.value(), CHOSE_USERPASS)
        transport.clear()
        protocol.dataReceived(login(user, password))
        return protocol, transport

    def reason(self) -> str:
        """
        The reason of the one session that ended.
        """
        assert isinstance(self, SynchronousTestCase)
        [event] = self.log.sessionEvents()
        reason = event["reason"]
        assert isinstance(reason, str)
        return reason

    def sessionReasons(self) -> list[str]:
        """
        The reasons of every session that ended, in order.
        """
        return [str(e["reason"]) for e in self.log.sessionEvents()]

    def attempt(self) -> Attempt:
        """
        The one outbound connection attempt made.
        """
        assert isinstance(self, SynchronousTestCase)
        [attempt] = self.dialler.attempts
        return attempt

    log: LogCapture
    dialler: FakeDialler


class AcceptTests(AccessTestMixin, SynchronousTestCase):
    """
    At accept: a client address no rule could ever allow is closed before
    anything is read.
    """

    RULES: list[dict[str, object]] = [
        {"action": "allow", "from": ["192.0.2.0/24"]},
        {"action": "deny"},
    ]

    def test_clientNoRuleAllows(self) -> None:
        """
        A client outside every allowing rule's C{from} gets no protocol,
        and the refusal is logged with its address and why.
        """
        factory = self.serve(self.RULES)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000)))
        self.assertEqual(factory.sessions, set())
        text = self.log.text()
        self.assertIn("127.0.0.1:50000", text)
        self.assertIn("no rule allows this client", text)

    def test_allowedClientServed(self) -> None:
        """
        A client inside the allowing rule's C{from} is served: its request
        is dialled.
        """
        factory = self.serve(self.RULES)
        self.request(factory, CONNECT_192_0_2_5, TEST_NET_CLIENT)
        self.assertEqual((self.attempt().host, self.attempt().port), ("192.0.2.5", 80))
        self.assertNotIn("no rule allows this client", self.log.text())

    def test_denyAfterConditionalAllowStillAccepts(self) -> None:
        """
        A client that some allowing rule could match (here only for one
        command) is accepted, even though most of its requests are denied.
        """
        factory = self.serve(
            [
                {"action": "allow", "commands": ["bind"]},
                {"action": "deny"},
            ]
        )
        self.assertIsNotNone(factory.buildProtocol(OTHER_CLIENT))


class RequestTests(AccessTestMixin, SynchronousTestCase):
    """
    On the request: the rules decide on the client, user and groups,
    version, command and destination as named.
    """

    DENY_TEN: list[dict[str, object]] = [
        {"action": "deny", "name": "no ten", "to": ["10.0.0.0/8"]},
    ]

    def test_deniedCIDR(self) -> None:
        """
        CONNECT to an IP a CIDR rule denies: 0x02, nothing dialled, and the
        session's log names the rule and the target.
        """
        factory = self.serve(self.DENY_TEN)
        protocol, transport = self.request(factory, CONNECT_10_1_2_3)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertTrue(transport.closing)
        self.assertEqual(self.dialler.attempts, [])
        self.assertEqual(self.log.sessionEvents(), [])  # lingering
        closeSession(protocol)
        reason = self.reason()
        self.assertIn('rule 1 ("no ten")', reason)
        self.assertIn("10.1.2.3:80", reason)

    def test_allowedCIDR(self) -> None:
        """
        A target outside the denying rule falls through to the default
        allow: dialled, and answered success once connected.
        """
        factory = self.serve(self.DENY_TEN)
        _, transport = self.request(factory, CONNECT_192_0_2_5)
        attempt = self.attempt()
        self.assertEqual((attempt.host, attempt.port), ("192.0.2.5", 80))
        attempt.succeed()
        self.assertEqual(transport.value(), SUCCESS_BND)

    def test_socks4Denied(self) -> None:
        """
        SOCKS4 has one failure code: a denied CONNECT is answered 91.
        """
        factory = self.serve(self.DENY_TEN)
        protocol, transport = connectClient(factory, TEST_NET_CLIENT)
        protocol.dataReceived(SOCKS4_CONNECT_10_1_2_3)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertEqual(self.dialler.attempts, [])
        closeSession(protocol)
        self.assertIn('rule 1 ("no ten")', self.reason())

    def test_groupMember(self) -> None:
        """
        A rule allowing C{group:staff} lets a member who logged in through:
        the request is dialled.
        """
        factory = self.serve(
            [
                {"action": "allow", "name": "staff", "users": ["group:staff"]},
                {"action": "deny", "name": "others"},
            ],
            users=USERS,
        )
        protocol, transport = self.loggedIn(factory, b"alice")
        self.assertEqual(transport.value(), AUTH_OK)
        protocol.dataReceived(CONNECT_192_0_2_5)
        self.assertEqual(self.attempt().host, "192.0.2.5")

    def test_groupNonMember(self) -> None:
        """
        A user who is not in the group is denied by the rule after it: 0x02
        naming that rule, nothing dialled.
        """
        factory = self.serve(
            [
                {"action": "allow", "name": "staff", "users": ["group:staff"]},
                {"action": "deny", "name": "others"},
            ],
            users=USERS,
        )
        protocol, transport = self.loggedIn(factory, b"bob")
        self.assertEqual(transport.value(), AUTH_OK)
        transport.clear()
        protocol.dataReceived(CONNECT_192_0_2_5)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(self.dialler.attempts, [])
        closeSession(protocol)
        self.assertIn('rule 2 ("others")', self.reason())

    def test_version4(self) -> None:
        """
        A rule denying version 4 denies SOCKS4 but not SOCKS5 (nor 4a,
        which is a version of its own).
        """
        factory = self.serve([{"action": "deny", "versions": [4]}])
        protocol, transport = connectClient(factory, TEST_NET_CLIENT)
        protocol.dataReceived(SOCKS4_CONNECT_192_0_2_5)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertEqual(self.dialler.attempts, [])

        protocol, transport = connectClient(factory, TEST_NET_CLIENT)
        protocol.dataReceived(SOCKS4A_CONNECT_EXAMPLE_COM)
        self.assertEqual(transport.value(), b"")
        self.assertEqual([a.host for a in self.dialler.attempts], ["example.com"])

        self.request(factory, CONNECT_192_0_2_5)
        self.assertEqual(len(self.dialler.attempts), 2)

    def test_version4a(self) -> None:
        """
        A rule denying version "4a" denies a SOCKS4a request (91) but lets
        a plain SOCKS4 one through.
        """
        factory = self.serve([{"action": "deny", "versions": ["4a"]}])
        protocol, transport = connectClient(factory, TEST_NET_CLIENT)
        protocol.dataReceived(SOCKS4A_CONNECT_EXAMPLE_COM)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertEqual(self.dialler.attempts, [])

        protocol, transport = connectClient(factory, TEST_NET_CLIENT)
        protocol.dataReceived(SOCKS4_CONNECT_192_0_2_5)
        self.attempt().succeed()
        self.assertEqual(transport.value(), SOCKS4_GRANTED_BND)

    def test_version5(self) -> None:
        """
        A rule denying version 5 denies a SOCKS5 request with 0x02.
        """
        factory = self.serve([{"action": "deny", "versions": [5]}])
        _, transport = self.request(factory, CONNECT_192_0_2_5)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(self.dialler.attempts, [])

    def test_commandBind(self) -> None:
        """
        A rule denying C{bind}: a BIND gets 0x02 and no listener, while a
        CONNECT is dialled.
        """
        listeners = FakeListeners()
        factory = self.serve(
            [{"action": "deny", "commands": ["bind"]}], listeners=listeners
        )
        _, transport = self.request(factory, BIND_192_0_2_7)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(listeners.tcp, [])
        self.request(factory, CONNECT_192_0_2_5)
        self.assertEqual(self.attempt().host, "192.0.2.5")

    def test_commandUDP(self) -> None:
        """
        A rule denying C{udp}: a UDP ASSOCIATE gets 0x02 and no UDP port is
        opened, while a BIND is served.
        """
        listeners = FakeListeners()
        factory = self.serve(
            [{"action": "deny", "commands": ["udp"]}], listeners=listeners
        )
        _, transport = self.request(factory, UDP_ASSOCIATE)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(listeners.udp, [])
        _, transport = self.request(factory, BIND_192_0_2_7)
        self.assertEqual(transport.value(), BIND_FIRST_REPLY)

    def test_commandConnect(self) -> None:
        """
        A rule denying C{connect} denies CONNECT, but a UDP ASSOCIATE is
        served.
        """
        listeners = FakeListeners()
        factory = self.serve(
            [{"action": "deny", "commands": ["connect"]}], listeners=listeners
        )
        _, transport = self.request(factory, CONNECT_192_0_2_5)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(self.dialler.attempts, [])
        _, transport = self.request(factory, UDP_ASSOCIATE)
        self.assertEqual(transport.value(), UDP_REPLY)


class NameTests(AccessTestMixin, SynchronousTestCase):
    """
    A target by name: the dialler is given which addresses the rules allow,
    a name that resolves to nothing allowed is denied, and the address
    reached is checked again.
    """

    DENY_TEN: list[dict[str, object]] = [
        {"action": "deny", "name": "no ten", "to": ["10.0.0.0/8"]},
    ]

    def test_filterGiven(self) -> None:
        """
        The dialler gets the name unresolved, with a filter that allows
        exactly the addresses the rules allow.
        """
        factory = self.serve(self.DENY_TEN)
        self.request(factory, CONNECT_EXAMPLE_COM)
        attempt = self.attempt()
        self.assertEqual((attempt.host, attempt.port), ("example.com", 80))
        accept = attempt.accept
        assert accept is not None
        self.assertFalse(accept("10.1.2.3"))
        self.assertTrue(accept("192.0.2.5"))
        self.assertEqual(
            attempt.resolve(["10.0.0.1", "192.0.2.5", "10.9.9.9"]), ["192.0.2.5"]
        )

    def test_filterDeniesOwnAddress(self) -> None:
        """
        The filter denies the server's own listening address even at the
        port the name is dialled on.
        """
        factory = self.serve(self.DENY_TEN)
        # CONNECT example.com:1080, the server's port
        self.request(
            factory, bytes.fromhex("05 01 00 03 0b 6578616d706c652e636f6d 0438")
        )
        accept = self.attempt().accept
        assert accept is not None
        self.assertFalse(accept("127.0.0.1"))
        self.assertTrue(accept("127.0.0.2"))

    def test_ipLiteralNoFilter(self) -> None:
        """
        An IP-literal target was checked on the request: no filter is
        given to the dialler.
        """
        factory = self.serve(self.DENY_TEN)
        self.request(factory, CONNECT_192_0_2_5)
        self.assertIsNone(self.attempt().accept)

    def test_everyAddressFiltered(self) -> None:
        """
        When the resolver drops every address and the attempt fails with
        DNSLookupError, the reply is 0x02 (not host unreachable) and the log
        names the rule that denied them.
        """
        factory = self.serve(self.DENY_TEN)
        protocol, transport = self.request(factory, CONNECT_EXAMPLE_COM)
        attempt = self.attempt()
        self.assertEqual(attempt.resolve(["10.0.0.1", "10.0.0.2"]), [])
        attempt.fail(error.DNSLookupError("example.com"))
        self.assertEqual(transport.value(), failure5(0x02))
        closeSession(protocol)
        reason = self.reason()
        self.assertIn('rule 1 ("no ten")', reason)
        self.assertIn("example.com", reason)

    def test_unresolvedNameNotPolicy(self) -> None:
        """
        A name that does not resolve at all (nothing was filtered) is host
        unreachable, 0x04, not a denial.
        """
        factory = self.serve(self.DENY_TEN)
        _, transport = self.request(factory, CONNECT_EXAMPLE_COM)
        attempt = self.attempt()
        self.assertEqual(attempt.resolve([]), [])
        attempt.fail(error.DNSLookupError("example.com"))
        self.assertEqual(transport.value(), failure5(0x04))

    def test_allowedAddressConnects(self) -> None:
        """
        A name that resolves to an allowed address among denied ones is
        connected to, and the reply is success.
        """
        factory = self.serve(self.DENY_TEN)
        _, transport = self.request(factory, CONNECT_EXAMPLE_COM)
        attempt = self.attempt()
        self.assertEqual(attempt.resolve(["10.0.0.1", "192.0.2.5"]), ["192.0.2.5"])
        _, target = attempt.succeed(peer=("192.0.2.5", 80))
        self.assertEqual(transport.value(), SUCCESS_BND)
        self.assertFalse(target.disconnecting)

    def test_reachedAddressChecked(self) -> None:
        """
        A dialler of the embedding program's (the simple three-argument
        kind, given no filter) that connects to an address the rules deny:
        the target connection is aborted and the client gets 0x02 naming
        the rule and the address.
        """
        factory = self.serve(self.DENY_TEN, simpleDialler=True)
        protocol, transport = self.request(factory, CONNECT_EXAMPLE_COM)
        attempt = self.attempt()
        self.assertIsNone(attempt.accept)
        _, target = attempt.succeed(peer=("10.1.2.3", 80))
        self.assertTrue(target.aborted)
        self.assertEqual(transport.value(), failure5(0x02))
        closeSession(protocol)
        reason = self.reason()
        self.assertIn('rule 1 ("no ten")', reason)
        self.assertIn("example.com at 10.1.2.3", reason)

    def test_reachedAddressAllowed(self) -> None:
        """
        The same dialler reaching an allowed address: success, nothing
        aborted.
        """
        factory = self.serve(self.DENY_TEN, simpleDialler=True)
        _, transport = self.request(factory, CONNECT_EXAMPLE_COM)
        _, target = self.attempt().succeed(peer=("192.0.2.5", 80))
        self.assertFalse(target.aborted)
        self.assertEqual(transport.value(), SUCCESS_BND)

    def test_nameRule(self) -> None:
        """
        A rule allowing a name, then one denying everything: that name is
        dialled (any of its addresses allowed) and connected; another name
        is denied at once, nothing dialled.
        """
        factory = self.serve(
            [
                {"action": "allow", "name": "org", "to": ["example.org"]},
                {"action": "deny", "name": "rest"},
            ]
        )
        _, transport = self.request(factory, CONNECT_EXAMPLE_ORG)
        attempt = self.attempt()
        self.assertEqual((attempt.host, attempt.port), ("example.org", 443))
        self.assertEqual(
            attempt.resolve(["192.0.2.5", "10.1.2.3"]), ["192.0.2.5", "10.1.2.3"]
        )
        attempt.succeed(peer=("192.0.2.5", 443))
        self.assertEqual(transport.value(), SUCCESS_BND)

        protocol, transport = self.request(factory, CONNECT_EXAMPLE_COM)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(len(self.dialler.attempts), 1)
        closeSession(protocol)
        self.assertIn('rule 2 ("rest")', self.sessionReasons()[-1])


class BindAddressTests(AccessTestMixin, SynchronousTestCase):
    """
    An allowing rule's C{bind} is the source address of the connections
    it allows.
    """

    RULES: list[dict[str, object]] = [
        {"action": "allow", "to": ["192.0.2.0/24"], "bind": "192.0.2.10"},
    ]

    def test_bindForIPTarget(self) -> None:
        """
        An IP-literal target the rule allows is dialled from its C{bind}.
        """
        factory = self.serve(self.RULES)
        self.request(factory, CONNECT_192_0_2_5)
        self.assertEqual(self.attempt().bindAddress, "192.0.2.10")

    def test_noBindFromOtherRules(self) -> None:
        """
        A target allowed by another rule (the default allow) is dialled
        without a source address.
        """
        factory = self.serve(self.RULES)
        self.request(factory, CONNECT_10_1_2_3)
        self.assertIsNone(self.attempt().bindAddress)


class BindPeerTests(AccessTestMixin, SynchronousTestCase):
    """
    BIND: the peer the request names and the peer that connects are both
    checked.
    """

    RULES: list[dict[str, object]] = [
        {"action": "deny", "name": "no test-net", "to": ["192.0.2.0/24"]},
    ]

    def test_expectedPeerDenied(self) -> None:
        """
        A BIND naming a peer IP the rules deny: 0x02 and no listener.
        """
        listeners = FakeListeners()
        factory = self.serve(self.RULES, listeners=listeners)
        protocol, transport = self.request(factory, BIND_192_0_2_7)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(listeners.tcp, [])
        closeSession(protocol)
        self.assertIn('rule 1 ("no test-net")', self.reason())

    def test_actualPeerDenied(self) -> None:
        """
        A BIND from any peer (0.0.0.0) is listened for; a peer connecting
        from an address the rules deny is refused, the BIND fails with 0x02
        naming the rule and the peer, and the listener is closed.
        """
        listeners = FakeListeners()
        factory = self.serve(self.RULES, listeners=listeners)
        protocol, transport = self.request(factory, BIND_ANY)
        self.assertEqual(transport.value(), BIND_FIRST_REPLY)
        self.assertEqual(listeners.openPorts(), 1)
        transport.clear()
        _, peers = listeners.tcp[0]
        self.assertIsNone(peers.buildProtocol(IPv4Address("TCP", "192.0.2.9", 5555)))
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(listeners.openPorts(), 0)
        closeSession(protocol)
        reason = self.reason()
        self.assertIn('rule 1 ("no test-net")', reason)
        self.assertIn("192.0.2.9:5555", reason)

    def test_actualPeerAllowed(self) -> None:
        """
        A peer from an address the rules allow is accepted: the second
        reply names it.
        """
        listeners = FakeListeners()
        factory = self.serve(self.RULES, listeners=listeners)
        _, transport = self.request(factory, BIND_ANY)
        transport.clear()
        _, peers = listeners.tcp[0]
        peer = IPv4Address("TCP", "198.51.100.9", 5555)
        protocol = peers.buildProtocol(peer)
        assert protocol is not None
        protocol.makeConnection(HalfCloseTransport(peerAddress=peer))
        # success, the peer 198.51.100.9:5555 (0x15b3)
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 c6336409 15b3"))


class UDPTests(AccessTestMixin, SynchronousTestCase):
    """
    UDP: each new destination of an association is checked; denied
    datagrams are dropped, counted and logged once per destination.
    """

    RULES: list[dict[str, object]] = [
        {"action": "deny", "name": "no test-net", "to": ["192.0.2.0/24"]},
    ]

    def associate(
        self, listeners: FakeListeners
    ) -> tuple[
        SOCKSServerProtocol, UDPAssociation, list[tuple[bytes, tuple[str, int]]]
    ]:
        """
        A UDP association of a client on 127.0.0.1 under C{RULES}: the
        session, the association and what its socket sent.
        """
        factory = self.serve(self.RULES, listeners=listeners)
        protocol, transport = self.request(
            factory, UDP_ASSOCIATE, IPv4Address("TCP", "127.0.0.1", 50000)
        )
        self.assertEqual(transport.value(), UDP_REPLY)
        [(udp, association)] = listeners.udp
        assert isinstance(association, UDPAssociation)
        return protocol, association, udp.sent

    def denials(self) -> list[str]:
        """
        The formatted lines that log a denied UDP destination.
        """
        return [
            formatEvent(e)
            for e in self.log.events
            if "UDP association of" in e.get("log_format", "")
        ]

    def test_deniedDestination(self) -> None:
        """
        Datagrams to a denied IP are dropped and counted under "denied by
        policy"; the denial is logged once, naming the rule; a datagram to
        an allowed IP is sent.
        """
        _, association, sent = self.associate(FakeListeners())
        association.datagramReceived(TO_192_0_2_1_DNS + b"one", CLIENT_UDP)
        association.datagramReceived(TO_192_0_2_1_DNS + b"two", CLIENT_UDP)
        association.datagramReceived(TO_198_51_100_1_DNS + b"ok", CLIENT_UDP)
        self.assertEqual(sent, [(b"ok", ("198.51.100.1", 53))])
        self.assertEqual(association.drops["denied by policy"], 2)
        [line] = self.denials()
        self.assertIn("192.0.2.1:53", line)
        self.assertIn('rule 1 ("no test-net")', line)

    def test_deniedPerDestination(self) -> None:
        """
        Each denied destination is logged once.
        """
        _, association, _ = self.associate(FakeListeners())
        other = bytes.fromhex("0000 00 01 c0000202 0035")  # 192.0.2.2:53
        for _ in range(3):
            association.datagramReceived(TO_192_0_2_1_DNS + b"x", CLIENT_UDP)
            association.datagramReceived(other + b"x", CLIENT_UDP)
        self.assertEqual(association.drops["denied by policy"], 6)
        self.assertEqual(len(self.denials()), 2)

    def test_deniedName(self) -> None:
        """
        A name that resolves to a denied address is dropped too, the log
        naming it.
        """
        listeners = FakeListeners(names={"denied.example": ["192.0.2.1"]})
        _, association, sent = self.associate(listeners)
        association.datagramReceived(TO_DENIED_EXAMPLE_DNS + b"x", CLIENT_UDP)
        self.assertEqual(sent, [])
        self.assertEqual(association.drops["denied by policy"], 1)
        [line] = self.denials()
        self.assertIn("denied.example:53", line)

    def test_dropsInEndLine(self) -> None:
        """
        The association's end line counts the denied datagrams.
        """
        protocol, association, _ = self.associate(FakeListeners())
        association.datagramReceived(TO_192_0_2_1_DNS + b"x", CLIENT_UDP)
        closeSession(protocol)
        [end] = [
            e
            for e in self.log.events
            if "ended" in e.get("log_format", "")
            and "UDP association" in e.get("log_format", "")
        ]
        self.assertEqual(end["drops"], {"denied by policy": 1})


class DefaultRuleTests(AccessTestMixin, SynchronousTestCase):
    """
    The built-in rules around the file's.
    """

    def test_publicDeniesLoopback(self) -> None:
        """
        With a public listener, CONNECT 127.0.0.1:80 is denied by the
        default rule, named in the log.
        """
        factory = self.serve([], publicListener=True)
        protocol, transport = self.request(factory, CONNECT_LOOPBACK_80)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(self.dialler.attempts, [])
        closeSession(protocol)
        self.assertIn("default rule (deny loopback", self.reason())

    def test_loopbackOnlyAllowsLoopback(self) -> None:
        """
        Without a public listener, CONNECT 127.0.0.1:80 is dialled.
        """
        factory = self.serve([], publicListener=False)
        self.request(factory, CONNECT_LOOPBACK_80)
        self.assertEqual((self.attempt().host, self.attempt().port), ("127.0.0.1", 80))

    def test_publicAcceptingAddress(self) -> None:
        """
        A client accepted on an address that is not loopback makes the
        server public: the loopback denial applies without publicListener.
        """
        factory = self.serve([], publicListener=False)
        protocol, transport = connectClient(
            factory, TEST_NET_CLIENT, IPv4Address("TCP", "192.0.2.100", 1080)
        )
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_LOOPBACK_80)
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(0x02))
        self.assertEqual(self.dialler.attempts, [])

    def test_catchAllAllowReplacesLocalDenial(self) -> None:
        """
        A file ending in a catch-all allow replaces the default tail: with a
        public listener, loopback is allowed.
        """
        factory = self.serve([{"action": "allow"}], publicListener=True)
        self.request(factory, CONNECT_LOOPBACK_80)
        self.assertEqual(self.attempt().host, "127.0.0.1")

    def test_selfAlwaysDenied(self) -> None:
        """
        The server's own address is denied by the built-in first rule even
        when the file's last rule allows everything; the log says why.
        """
        factory = self.serve([{"action": "allow"}])
        self.assertIs(factory.policy.rules[0], DENY_SELF)
        protocol, transport = self.request(factory, CONNECT_OWN)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(self.dialler.attempts, [])
        closeSession(protocol)
        reason = self.reason()
        self.assertIn("default rule (deny self)", reason)
        self.assertIn("own listening address", reason)


class LimitTests(AccessTestMixin, SynchronousTestCase):
    """
    Admission limits through the factory: per client at accept, the
    authentication back-off, and per user after login.
    """

    def test_sessionsPerClient(self) -> None:
        """
        With two sessions per client, a third connection from the same IP
        gets no protocol (another IP does); closing one frees a slot.
        """
        factory = self.serve(limits=LimitSettings(sessionsPerClient=2))
        first = factory.buildProtocol(TEST_NET_CLIENT)
        second = factory.buildProtocol(TEST_NET_CLIENT)
        assert first is not None and second is not None
        self.assertIsNone(factory.buildProtocol(TEST_NET_CLIENT))
        self.assertIsNotNone(factory.buildProtocol(OTHER_CLIENT))
        self.assertIn("sessions-per-client reached", self.log.text())
        first.makeConnection(HalfCloseTransport(peerAddress=TEST_NET_CLIENT))
        closeSession(first)
        self.assertIsNotNone(factory.buildProtocol(TEST_NET_CLIENT))
        self.assertIsNone(factory.buildProtocol(TEST_NET_CLIENT))

    def test_authFailureBackOff(self) -> None:
        """
        Two failed logins a minute are allowed; the third starts a
        back-off: the next connection from that IP gets no protocol (other
        IPs are served), until the back-off is over.
        """
        factory = self.serve(
            users=USERS, limits=LimitSettings(authFailuresPerMinutePerClient=2)
        )
        for _ in range(3):
            _, transport = self.loggedIn(factory, b"alice", b"wrong")
            self.assertEqual(transport.value(), AUTH_FAILED)
        self.assertIsNone(factory.buildProtocol(TEST_NET_CLIENT))
        self.assertIsNotNone(factory.buildProtocol(OTHER_CLIENT))
        self.reactor.advance(FIRST_BACK_OFF + 1)
        self.assertIsNotNone(factory.buildProtocol(TEST_NET_CLIENT))

    def test_sessionsPerUser(self) -> None:
        """
        With one session per user, a second concurrent login of the same
        user is answered status 01 and closed; another user is not
        affected; once the first session ends, the user may log in again,
        and when all have ended nothing is left tracked.
        """
        factory = self.serve(users=USERS, limits=LimitSettings(sessionsPerUser=1))
        first, transport = self.loggedIn(factory, b"alice")
        self.assertEqual(transport.value(), AUTH_OK)
        second, transport = self.loggedIn(factory, b"alice")
        self.assertEqual(transport.value(), AUTH_FAILED)
        self.assertTrue(transport.closing)
        closeSession(second)
        self.assertIn("sessions-per-user reached", self.sessionReasons()[-1])
        bob, transport = self.loggedIn(factory, b"bob")
        self.assertEqual(transport.value(), AUTH_OK)
        closeSession(first)
        third, transport = self.loggedIn(factory, b"alice")
        self.assertEqual(transport.value(), AUTH_OK)
        self.assertEqual(factory.limiter.tracked()["users"], 2)
        closeSession(third)
        closeSession(bob)
        self.assertEqual(
            factory.limiter.tracked(), {"clients": 0, "users": 0, "failures": 0}
        )

    def test_relayedSessionFreesSlots(self) -> None:
        """
        A relayed session of a user holds its user and client slots until
        both its connections have ended.
        """
        factory = self.serve(
            users=USERS,
            limits=LimitSettings(sessionsPerUser=1, sessionsPerClient=1),
        )
        protocol, _ = self.loggedIn(factory, b"alice")
        protocol.dataReceived(CONNECT_192_0_2_5)
        target, _ = self.attempt().succeed()
        self.assertEqual(factory.limiter.tracked()["users"], 1)
        closeSession(protocol)
        target.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(
            factory.limiter.tracked(), {"clients": 0, "users": 0, "failures": 0}
        )
        _, transport = self.loggedIn(factory, b"alice")
        self.assertEqual(transport.value(), AUTH_OK)


class BandwidthTests(AccessTestMixin, SynchronousTestCase):
    """
    The per-session cap throttles each direction of a relay by pausing its
    reading side, through the same gate as flow control.
    """

    def relaying(
        self, **settings: Any
    ) -> tuple[
        SOCKSServerFactory,
        SOCKSServerProtocol,
        HalfCloseTransport,
        TargetProtocol,
        HalfCloseTransport,
    ]:
        """
        A session relaying to 192.0.2.5:80 on a factory with C{settings}:
        the factory, the session, the client's transport, the target's
        protocol and transport.
        """
        factory = self.serve(**settings)
        protocol, transport = self.request(factory, CONNECT_192_0_2_5)
        target, targetTransport = self.attempt().succeed()
        self.assertEqual(transport.value(), SUCCESS_BND)
        transport.clear()
        return factory, protocol, transport, target, targetTransport

    def test_clientDirection(self) -> None:
        """
        At 1000 bytes/s (one second's burst), 3000 bytes from the client
        are relayed at once, then the client's reading is paused until the
        2000-byte debt is paid back, two seconds later.
        """
        _, protocol, transport, _, targetTransport = self.relaying(
            bandwidthPerSession=1000
        )
        protocol.dataReceived(b"x" * 1000)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"x" * 2000)
        self.assertEqual(len(targetTransport.value()), 3000)
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(targetTransport.producerState, "producing")
        self.reactor.advance(1.0)
        self.assertEqual(transport.producerState, "paused")
        self.reactor.advance(1.0)
        self.assertEqual(transport.producerState, "producing")

    def test_targetDirection(self) -> None:
        """
        The same cap, separately, for what the target sends: its reading
        is paused, the client's is not.
        """
        _, _, transport, target, targetTransport = self.relaying(
            bandwidthPerSession=1000
        )
        target.dataReceived(b"y" * 3000)
        self.assertEqual(len(transport.value()), 3000)
        self.assertEqual(targetTransport.producerState, "paused")
        self.assertEqual(transport.producerState, "producing")
        self.reactor.advance(1.0)
        self.assertEqual(targetTransport.producerState, "paused")
        self.reactor.advance(1.0)
        self.assertEqual(targetTransport.producerState, "producing")

    def test_noCap(self) -> None:
        """
        Without a cap nothing is paused, however much is sent.
        """
        _, protocol, transport, target, targetTransport = self.relaying()
        protocol.dataReceived(b"x" * 100_000)
        target.dataReceived(b"y" * 100_000)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(targetTransport.producerState, "producing")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_flowControlPauseKept(self) -> None:
        """
        The target's write buffer being full (flow control pausing the
        client's reader) is not undone when the throttle's wait ends: the
        client stays paused until flow control resumes it.
        """
        _, protocol, transport, _, targetTransport = self.relaying(
            bandwidthPerSession=1000
        )
        protocol.dataReceived(b"x" * 3000)
        clientReader = targetTransport.producer
        assert clientReader is not None
        clientReader.pauseProducing()
        self.reactor.advance(2.0)
        self.assertEqual(transport.producerState, "paused")
        clientReader.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_throttleWaitsForFlowControl(self) -> None:
        """
        The other order: flow control paused first, then the throttle; flow
        control resuming does not undo the throttle's pause.
        """
        _, protocol, transport, _, targetTransport = self.relaying(
            bandwidthPerSession=1000
        )
        clientReader = targetTransport.producer
        assert clientReader is not None
        clientReader.pauseProducing()
        protocol.dataReceived(b"x" * 3000)
        clientReader.resumeProducing()
        self.assertEqual(transport.producerState, "paused")
        self.reactor.advance(2.0)
        self.assertEqual(transport.producerState, "producing")

    def test_reconfigureLifts(self) -> None:
        """
        A reload without a cap lifts it from an open session: nothing more
        is paused, and a wait in progress ends.
        """
        factory, protocol, transport, _, _ = self.relaying(bandwidthPerSession=1000)
        protocol.dataReceived(b"x" * 3000)
        self.assertEqual(transport.producerState, "paused")
        factory.reconfigure(ServerSettings(bandwidthPerSession=None))
        self.reactor.advance(2.0)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"x" * 100_000)
        self.assertEqual(transport.producerState, "producing")

    def test_reconfigureSlows(self) -> None:
        """
        A reload to 500 bytes/s: the open session's buckets follow (burst
        500), so 3000 bytes now cost five seconds.
        """
        factory, protocol, transport, _, _ = self.relaying(bandwidthPerSession=1000)
        factory.reconfigure(ServerSettings(bandwidthPerSession=500))
        protocol.dataReceived(b"x" * 3000)
        self.assertEqual(transport.producerState, "paused")
        self.reactor.advance(4.0)
        self.assertEqual(transport.producerState, "paused")
        self.reactor.advance(1.0)
        self.assertEqual(transport.producerState, "producing")

    def test_reconfigureStartsCap(self) -> None:
        """
        A reload adding a cap throttles a session opened without one.
        """
        factory, protocol, transport, target, targetTransport = self.relaying()
        factory.reconfigure(ServerSettings(bandwidthPerSession=1000))
        protocol.dataReceived(b"x" * 3000)
        self.assertEqual(transport.producerState, "paused")
        target.dataReceived(b"y" * 3000)
        self.assertEqual(targetTransport.producerState, "paused")
        self.reactor.advance(2.0)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(targetTransport.producerState, "producing")

    def test_endCancelsWait(self) -> None:
        """
        A session that ends while throttled leaves no timer behind.
        """
        _, protocol, _, target, _ = self.relaying(bandwidthPerSession=1000)
        protocol.dataReceived(b"x" * 3000)
        self.assertNotEqual(self.reactor.getDelayedCalls(), [])
        closeSession(protocol)
        target.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class ReloadTests(AccessTestMixin, SynchronousTestCase):
    """
    New rules apply to the next request, not to sessions already past
    theirs.
    """

    def test_nextRequest(self) -> None:
        """
        After setRules denies 10.0.0.0/8, the next CONNECT there is denied;
        before, it was dialled.
        """
        factory = self.serve([])
        self.request(factory, CONNECT_10_1_2_3)
        self.assertEqual(len(self.dialler.attempts), 1)
        factory.setRules(
            parseRules(
                [{"action": "deny", "name": "no ten", "to": ["10.0.0.0/8"]}],
                {},
                "test.toml",
            ),
            {},
        )
        _, transport = self.request(factory, CONNECT_10_1_2_3)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertEqual(len(self.dialler.attempts), 1)

    def test_establishedSessionKept(self) -> None:
        """
        A session relaying to 10.1.2.3 keeps relaying after rules denying
        it are loaded; a session still dialling a name keeps the filter of
        the rules it was decided by.
        """
        factory = self.serve([])
        protocol, transport = self.request(factory, CONNECT_10_1_2_3)
        target, targetTransport = self.dialler.attempts[0].succeed()
        self.request(factory, CONNECT_EXAMPLE_COM)
        dialling = self.dialler.attempts[1]
        factory.setRules(
            parseRules([{"action": "deny", "to": ["10.0.0.0/8"]}], {}, "test.toml"),
            {},
        )
        protocol.dataReceived(b"ping")
        self.assertEqual(targetTransport.value(), b"ping")
        transport.clear()
        target.dataReceived(b"pong")
        self.assertEqual(transport.value(), b"pong")
        self.assertFalse(transport.closing)
        accept = dialling.accept
        assert accept is not None
        self.assertTrue(accept("10.1.2.3"))
        # The new rules do apply to a new session's name.
        self.request(factory, CONNECT_EXAMPLE_COM)
        newAccept = self.dialler.attempts[2].accept
        assert newAccept is not None
        self.assertFalse(newAccept("10.1.2.3"))


class FoundByReviewTests(SynchronousTestCase):
    """
    Two behaviours the first version of the access checks got wrong.
    """

    def test_bindForNameMatchedByName(self) -> None:
        """
        A rule that allows a name by name, with C{bind}, gives its source
        address to the dial of that name, although the name's addresses
        are only checked once resolved.
        """
        factory, _, dialler = makeFactory()
        factory.setRules(
            parseRules(
                [
                    {"action": "allow", "to": ["example.org"], "bind": "192.0.2.10"},
                    {"action": "deny"},
                ],
                {},
                "t.toml",
            ),
            {},
        )
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            GREETING_NO_AUTH
            + bytes.fromhex("05 01 00 03 0b 6578616d706c652e6f7267 01bb")
        )
        self.assertEqual(dialler.attempts[0].bindAddress, "192.0.2.10")

    def test_bindForAnyPeerOnPublicServer(self) -> None:
        """
        A BIND for any peer (DST 0.0.0.0) is not taken for a destination of
        0.0.0.0 by the default rules of a public server: it listens, and the
        peer that connects is what the rules check.
        """
        listeners = FakeListeners()
        factory, _, _ = makeFactory(listeners=listeners)
        factory.setRules((), {}, publicListener=True)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(
            GREETING_NO_AUTH + bytes.fromhex("05 02 00 01 00000000 0000")
        )
        self.assertEqual(transport.value()[:4], CHOSE_NO_AUTH + bytes.fromhex("05 00"))
        self.assertEqual(listeners.openPorts(), 1)
        _, peerFactory = listeners.tcp[0]
        self.assertIsNone(
            peerFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        )  # a loopback peer is denied by the default rules of a public server
        self.assertEqual(transport.value()[-10:-8], bytes.fromhex("05 02"))
