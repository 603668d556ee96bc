"""
BIND and UDP ASSOCIATE on the server, on fake transports, listeners and
resolver.  Wire bytes are written by hand from RFC 1928 and the SOCKS4 text.
"""

import socket
from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.server import SOCKSServerProtocol
from socks_twisted.server._udp import UDPAssociation

from ._fakes import FakeListeners, HalfCloseTransport, connectClient, makeFactory
from .test_session import GREETING_NO_AUTH, LogCapture, failure5

# BIND, expecting the peer from 127.0.0.2 (port ignored)
BIND_FROM_127_0_0_2 = bytes.fromhex("05 02 00 01 7f000002 0000")
# first reply: listening on 127.0.0.1:41000 (0xa028)
FIRST_REPLY = bytes.fromhex("05 00 00 01 7f000001 a028")
# second reply: the peer 127.0.0.2:5555 (0x15b3)
SECOND_REPLY = bytes.fromhex("05 00 00 01 7f000002 15b3")
PEER = IPv4Address("TCP", "127.0.0.2", 5555)


def peerConnects(
    listeners: FakeListeners, peer: IPv4Address = PEER
) -> tuple[object, HalfCloseTransport | None]:
    """
    A peer connects to the newest BIND listener; returns its protocol (or
    C{None} when refused) and transport.
    """
    port, factory = listeners.tcp[-1]
    protocol = factory.buildProtocol(peer)
    if protocol is None:
        return None, None
    transport = HalfCloseTransport(hostAddress=port.getHost(), peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


class BindTests(SynchronousTestCase):
    """
    BIND: two replies around one accepted peer.
    """

    def open(
        self, request: bytes, **settings: Any
    ) -> tuple[SOCKSServerProtocol, HalfCloseTransport, FakeListeners]:
        listeners = FakeListeners(names={"peer.example": ["127.0.0.2"]})
        factory, self.reactor, _ = makeFactory(listeners=listeners, **settings)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + request)
        return protocol, transport, listeners

    def test_twoRepliesThenRelay(self) -> None:
        """
        The first reply names the listener (on the address the client reached
        us at); the second names the peer; then bytes flow both ways and the
        listener is closed.
        """
        protocol, transport, listeners = self.open(BIND_FROM_127_0_0_2)
        self.assertEqual(transport.value(), bytes.fromhex("05 00") + FIRST_REPLY)
        self.assertEqual(listeners.openPorts(), 1)
        transport.clear()
        protocol.dataReceived(b"early")
        peer, peerTransport = peerConnects(listeners)
        assert peerTransport is not None
        self.assertEqual(transport.value(), SECOND_REPLY)
        self.assertEqual(listeners.openPorts(), 0)
        self.assertEqual(peerTransport.value(), b"early")
        transport.clear()
        peer.dataReceived(b"from peer")  # type: ignore[attr-defined]
        self.assertEqual(transport.value(), b"from peer")

    def test_onlyOnePeer(self) -> None:
        """
        After one peer is accepted, no other connection is.
        """
        _, _, listeners = self.open(BIND_FROM_127_0_0_2)
        peerConnects(listeners)
        second, _ = peerConnects(listeners)
        self.assertIsNone(second)

    def test_wrongPeerRefused(self) -> None:
        """
        A connection from another IP than the request named fails the session
        with 0x02, and the listener closes.
        """
        _, transport, listeners = self.open(BIND_FROM_127_0_0_2)
        transport.clear()
        peer, _ = peerConnects(listeners, IPv4Address("TCP", "127.0.0.3", 5555))
        self.assertIsNone(peer)
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertTrue(transport.closing)
        self.assertEqual(listeners.openPorts(), 0)

    def test_anyPeerWhenUnspecified(self) -> None:
        """
        A request naming 0.0.0.0 accepts a peer from anywhere.
        """
        _, transport, listeners = self.open(bytes.fromhex("05 02 00 01 00000000 0000"))
        transport.clear()
        peerConnects(listeners, IPv4Address("TCP", "127.0.0.9", 5555))
        self.assertEqual(transport.value(), bytes.fromhex("05 00 00 01 7f000009 15b3"))

    def test_peerByName(self) -> None:
        """
        A name in the request is resolved to the addresses a peer may come
        from.
        """
        _, transport, listeners = self.open(
            bytes.fromhex("05 02 00 03 0c 706565722e6578616d706c65 0000")
        )
        self.assertEqual(listeners.resolved, [("peer.example", socket.AF_INET)])
        transport.clear()
        peerConnects(listeners)
        self.assertEqual(transport.value(), SECOND_REPLY)

    def test_unresolvableName(self) -> None:
        """
        A name that does not resolve: 0x04, no listener.
        """
        _, transport, listeners = self.open(
            bytes.fromhex("05 02 00 03 07 6e6f2e6e616d65 0000")
        )
        self.assertEqual(transport.value(), bytes.fromhex("05 00") + failure5(0x04))
        self.assertEqual(listeners.tcp, [])

    def test_acceptDeadline(self) -> None:
        """
        Nobody connecting within --bind-timeout: 0x06 and the listener closes.
        """
        _, transport, listeners = self.open(BIND_FROM_127_0_0_2, bindTimeout=120.0)
        transport.clear()
        self.reactor.advance(119)
        self.assertEqual(listeners.openPorts(), 1)
        self.reactor.advance(2)
        self.assertEqual(transport.value(), failure5(0x06))
        self.assertEqual(listeners.openPorts(), 0)

    def test_clientLeavesWhileWaiting(self) -> None:
        """
        The listener closes when the client goes away.
        """
        protocol, _, listeners = self.open(BIND_FROM_127_0_0_2)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(listeners.openPorts(), 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_externalAddress(self) -> None:
        """
        --external-address replaces the listener's address in the replies,
        with the address of the listener's family when it names one per
        family.
        """
        for external in [("127.10.20.30",), ("2001:db8::7", "127.10.20.30")]:
            _, transport, _ = self.open(BIND_FROM_127_0_0_2, externalAddresses=external)
            self.assertEqual(
                transport.value(), bytes.fromhex("05 00 05 00 00 01 7f0a141e a028")
            )

    def test_externalAddressOfAnotherFamily(self) -> None:
        """
        An external address of the other family only leaves the listener's
        own address in the replies.
        """
        _, transport, _ = self.open(BIND_FROM_127_0_0_2, externalAddresses=("::1",))
        self.assertEqual(
            transport.value()[:10], bytes.fromhex("05 00 05 00 00 01 7f000001")
        )

    def test_socks4Bind(self) -> None:
        """
        SOCKS4 BIND: two 90 replies with the listener's then the peer's
        address; a wrong peer gets 91.
        """
        listeners = FakeListeners()
        factory, _, _ = makeFactory(listeners=listeners)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("04 02 0050 7f000002 00"))
        self.assertEqual(transport.value(), bytes.fromhex("00 5a a028 7f000001"))
        transport.clear()
        peerConnects(listeners)
        self.assertEqual(transport.value(), bytes.fromhex("00 5a 15b3 7f000002"))

        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("04 02 0050 7f000002 00"))
        transport.clear()
        peerConnects(listeners, IPv4Address("TCP", "127.0.0.3", 1))
        self.assertEqual(transport.value(), bytes.fromhex("00 5b 0000 00000000"))


CLIENT_UDP = ("127.0.0.1", 6000)
ECHO = ("127.0.0.1", 7)
# UDP ASSOCIATE, client will send from port 0 (unknown)
ASSOCIATE_ANY_PORT = bytes.fromhex("05 03 00 01 00000000 0000")
# header: RSV 0000, FRAG 00, ATYP 01, 127.0.0.1, port 7
TO_ECHO = bytes.fromhex("0000 00 01 7f000001 0007")


class UDPAssociateTests(SynchronousTestCase):
    """
    UDP ASSOCIATE: the association's socket, source locking, drops, and its
    end.
    """

    def open(
        self, request: bytes = ASSOCIATE_ANY_PORT, **settings: Any
    ) -> tuple[SOCKSServerProtocol, HalfCloseTransport, FakeListeners]:
        self.log = LogCapture(self)
        listeners = FakeListeners(names={"echo.example": ["127.0.0.1"]})
        factory, self.reactor, _ = makeFactory(listeners=listeners, **settings)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + request)
        return protocol, transport, listeners

    def association(self, listeners: FakeListeners) -> UDPAssociation:
        [(_, association)] = listeners.udp
        assert isinstance(association, UDPAssociation)
        return association

    def test_roundTrip(self) -> None:
        """
        The reply names the UDP port; a datagram's payload goes to the target
        named in its header, and the target's answer comes back with a header
        naming the target.
        """
        _, transport, listeners = self.open()
        self.assertEqual(
            transport.value(), bytes.fromhex("05 00 05 00 00 01 7f000001 a410")
        )
        [(udp, association)] = listeners.udp
        association.datagramReceived(TO_ECHO + b"hello", CLIENT_UDP)
        association.datagramReceived(b"HELLO", ECHO)
        self.assertEqual(udp.sent, [(b"hello", ECHO), (TO_ECHO + b"HELLO", CLIENT_UDP)])

    def test_lockedToFirstSourcePort(self) -> None:
        """
        With port 0 in the request, the first datagram's source port is the
        client's; later datagrams from other ports or IPs are dropped.
        """
        _, _, listeners = self.open()
        [(udp, association)] = listeners.udp
        association.datagramReceived(TO_ECHO + b"1", CLIENT_UDP)
        association.datagramReceived(TO_ECHO + b"2", ("127.0.0.1", 6001))
        association.datagramReceived(TO_ECHO + b"3", ("127.0.0.5", 6000))
        self.assertEqual(udp.sent, [(b"1", ECHO)])
        assert isinstance(association, UDPAssociation)
        self.assertEqual(association.drops["unknown source"], 2)

    def test_requestedPortOnly(self) -> None:
        """
        With a port in the request, only that source port is the client.
        """
        _, _, listeners = self.open(bytes.fromhex("05 03 00 01 7f000001 1771"))
        [(udp, association)] = listeners.udp
        association.datagramReceived(TO_ECHO + b"no", CLIENT_UDP)
        association.datagramReceived(TO_ECHO + b"yes", ("127.0.0.1", 6001))
        self.assertEqual(udp.sent, [(b"yes", ECHO)])

    def test_drops(self) -> None:
        """
        FRAG != 0, a malformed header, and a datagram from a host the client
        never sent to are dropped and counted by reason.
        """
        _, _, listeners = self.open()
        [(udp, _)] = listeners.udp
        association = self.association(listeners)
        association.datagramReceived(
            bytes.fromhex("0000 01 01 7f000001 0007 41"), CLIENT_UDP
        )
        association.datagramReceived(bytes.fromhex("0000 00 09 7f"), CLIENT_UDP)
        association.datagramReceived(
            bytes.fromhex("0001 00 01 7f000001 0007"), CLIENT_UDP
        )
        association.datagramReceived(b"stranger", ("127.0.0.9", 7))
        self.assertEqual(udp.sent, [])
        self.assertEqual(
            dict(association.drops),
            {"fragmented": 1, "malformed header": 2, "unknown source": 1},
        )

    def test_nameTarget(self) -> None:
        """
        A name in the header is resolved without blocking and the payload
        sent to its address; an unresolvable name is dropped.
        """
        _, _, listeners = self.open()
        [(udp, _)] = listeners.udp
        association = self.association(listeners)
        header = bytes.fromhex("0000 00 03 0c 6563686f2e6578616d706c65 0007")
        association.datagramReceived(header + b"by name", CLIENT_UDP)
        unknown = bytes.fromhex("0000 00 03 07 6e6f2e6e616d65 0007")
        association.datagramReceived(unknown + b"lost", CLIENT_UDP)
        self.assertEqual(udp.sent, [(b"by name", ECHO)])
        self.assertEqual(association.drops["name not resolved"], 1)

    def test_endsWithControlConnection(self) -> None:
        """
        Closing the TCP control connection closes the UDP port and logs the
        association's counts.
        """
        protocol, _, listeners = self.open()
        association = self.association(listeners)
        association.datagramReceived(TO_ECHO + b"abc", CLIENT_UDP)
        association.datagramReceived(b"x", ("127.0.0.9", 7))
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(listeners.openPorts(), 0)
        [event] = [
            e for e in self.log.events if "UDP association" in e.get("log_format", "")
        ]
        self.assertEqual(event["bytesFromClient"], 3)
        self.assertEqual(event["drops"], {"unknown source": 1})

    def test_controlEOFEndsAssociation(self) -> None:
        """
        End-of-file on the control connection closes it.
        """
        protocol, transport, _ = self.open()
        protocol.readConnectionLost()
        self.assertTrue(transport.closing)

    def test_idleTimeout(self) -> None:
        """
        No datagram either way for --udp-timeout closes the association.
        """
        _, transport, listeners = self.open(udpTimeout=60.0)
        association = self.association(listeners)
        self.reactor.pump([1.0] * 50)
        association.datagramReceived(TO_ECHO + b"keepalive", CLIENT_UDP)
        self.reactor.pump([1.0] * 50)
        self.assertFalse(transport.closing)
        self.reactor.pump([1.0] * 80)
        self.assertTrue(transport.closing)

    def test_ipv6Association(self) -> None:
        """
        A client on IPv6 gets an IPv6 UDP port; an IPv4 target cannot be
        reached from it and is dropped.
        """
        listeners = FakeListeners()
        factory, _, _ = makeFactory(listeners=listeners)
        protocol, transport = connectClient(
            factory,
            client=IPv6Address("TCP", "::1", 50000),
            server=IPv6Address("TCP", "::1", 1080),
        )
        protocol.dataReceived(GREETING_NO_AUTH + ASSOCIATE_ANY_PORT)
        self.assertEqual(
            transport.value(),
            bytes.fromhex("05 00 05 00 00 04 00000000000000000000000000000001 a410"),
        )
        [(udp, association)] = listeners.udp
        to6 = bytes.fromhex("0000 00 04 00000000000000000000000000000001 0007")
        association.datagramReceived(to6 + b"six", ("::1", 6000))
        association.datagramReceived(TO_ECHO + b"four", ("::1", 6000))
        self.assertEqual(udp.sent, [(b"six", ("::1", 7))])
