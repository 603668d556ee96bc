"""
Tests for Tor's SOCKS extensions in L{socks_twisted._wire}: RESOLVE (0xF0)
over SOCKS4, SOCKS4a and SOCKS5, and RESOLVE_PTR (0xF1) over SOCKS5, as
torspec's socks-extensions.txt (section 2) describes them.

The request vectors are the bytes tor-resolve 0.4.9 sent to a listener
that recorded them; the replies are what tor's own
C{connection_ap_handshake_socks_resolved} writes (BND.PORT 0).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import (
    NEED_DATA,
    AuthMethod,
    ClientConnection,
    Command,
    HandshakeState,
    MethodSelection,
    ProtocolError,
    ServerConnection,
    SOCKS4Reply,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5Request,
)

from ._helpers import serverAwaitingFirstMessage, serverAwaitingRequest

#: tor-resolve -5 example.invalid: RESOLVE, ATYP 3, port 0.
TOR_RESOLVE_5 = bytes.fromhex("05 f0 00 03 0f") + b"example.invalid" + b"\x00\x00"
#: tor-resolve -4 example.invalid: SOCKS4a, CD 0xF0, DSTPORT 0, DSTIP
#: 0.0.0.1, empty user ID, the name.
TOR_RESOLVE_4 = bytes.fromhex("04 f0 0000 00000001 00") + b"example.invalid\x00"
#: tor-resolve -x 127.0.0.1: RESOLVE_PTR, ATYP 1, port 0.
TOR_RESOLVE_PTR = bytes.fromhex("05 f1 00 01 7f000001 0000")


def _serverWithout(*dropped: Command) -> ServerConnection:
    return ServerConnection(set(Command) - set(dropped))


class ServerReadsTorRequestsTests(SynchronousTestCase):
    """
    A L{ServerConnection} reads what tor-resolve sends, and answers with one
    reply after which the connection is over.
    """

    def test_socks5Resolve(self) -> None:
        """
        tor-resolve's SOCKS5 RESOLVE reads as a L{SOCKS5Request} for the
        name, port 0; the IPv4 answer is ATYP 1 with BND.PORT 0, and the
        handshake ends CLOSED.
        """
        conn = serverAwaitingRequest()
        conn.receiveData(TOR_RESOLVE_5)
        self.assertEqual(
            conn.nextEvent(), SOCKS5Request(Command.RESOLVE, "example.invalid", 0)
        )
        reply = conn.send(SOCKS5Reply(0, "192.0.2.7", 0))
        self.assertEqual(reply.hex(" "), "05 00 00 01 c0 00 02 07 00 00")
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_socks5ResolveIPv6Answer(self) -> None:
        """
        An IPv6 answer is ATYP 4.
        """
        conn = serverAwaitingRequest()
        conn.receiveData(TOR_RESOLVE_5)
        conn.nextEvent()
        reply = conn.send(SOCKS5Reply(0, "2001:db8::1", 0))
        self.assertEqual(reply[:4], bytes.fromhex("05 00 00 04"))
        self.assertEqual(reply[4:20], bytes.fromhex("20010db8" + "00" * 11 + "01"))
        self.assertEqual(reply[20:], b"\x00\x00")

    def test_socks4aResolve(self) -> None:
        """
        tor-resolve's SOCKS4a RESOLVE reads as a L{SOCKS4Request}; the
        answer goes in DSTIP.
        """
        conn = serverAwaitingFirstMessage()
        conn.receiveData(TOR_RESOLVE_4)
        event = conn.nextEvent()
        self.assertEqual(
            event, SOCKS4Request(Command.RESOLVE, "example.invalid", 0, b"")
        )
        assert isinstance(event, SOCKS4Request)
        self.assertTrue(event.isSOCKS4a)
        reply = conn.send(SOCKS4Reply(90, "192.0.2.7", 0))
        self.assertEqual(reply.hex(" "), "00 5a 00 00 c0 00 02 07")
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_socks4ResolveAddress(self) -> None:
        """
        Plain SOCKS4 may carry RESOLVE too (Tor takes it): the target is
        the address.
        """
        conn = serverAwaitingFirstMessage()
        conn.receiveData(bytes.fromhex("04 f0 0000 c0000207 00"))
        self.assertEqual(
            conn.nextEvent(), SOCKS4Request(Command.RESOLVE, "192.0.2.7", 0)
        )

    def test_socks5ResolvePTR(self) -> None:
        """
        tor-resolve's RESOLVE_PTR reads as a request for the address; the
        answer is a name, ATYP 3.
        """
        conn = serverAwaitingRequest()
        conn.receiveData(TOR_RESOLVE_PTR)
        self.assertEqual(
            conn.nextEvent(), SOCKS5Request(Command.RESOLVE_PTR, "127.0.0.1", 0)
        )
        reply = conn.send(SOCKS5Reply(0, "localhost", 0))
        self.assertEqual(reply, bytes.fromhex("05 00 00 03 09") + b"localhost\0\0")
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_failureCloses(self) -> None:
        """
        A refused RESOLVE ends CLOSED, as any refusal does.
        """
        conn = serverAwaitingRequest()
        conn.receiveData(TOR_RESOLVE_5)
        conn.nextEvent()
        conn.send(SOCKS5Reply(4))
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_socks4ResolvePTRRefused(self) -> None:
        """
        RESOLVE_PTR is SOCKS5 only: over SOCKS4 it is an unknown command,
        reply 91 as soon as CD arrives.
        """
        conn = serverAwaitingFirstMessage()
        conn.receiveData(bytes.fromhex("04 f1"))
        error = self.assertRaises(ProtocolError, conn.nextEvent)
        self.assertEqual(error.reply, bytes.fromhex("00 5b 0000 00000000"))

    def test_turnedOffSOCKS5(self) -> None:
        """
        A server that does not serve RESOLVE and RESOLVE_PTR answers them
        0x07, command not supported, as soon as CMD arrives.
        """
        for request in (TOR_RESOLVE_5, TOR_RESOLVE_PTR):
            conn = _serverWithout(Command.RESOLVE, Command.RESOLVE_PTR)
            conn.receiveData(bytes.fromhex("05 01 00"))
            conn.nextEvent()
            conn.send(MethodSelection(AuthMethod.NO_AUTHENTICATION))
            conn.receiveData(request[:2])
            error = self.assertRaises(ProtocolError, conn.nextEvent)
            self.assertEqual(error.reply, bytes.fromhex("05 07 00 01 00000000 0000"))
            self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_turnedOffSOCKS4(self) -> None:
        """
        Without RESOLVE, SOCKS4 CD 0xF0 gets reply 91; CONNECT is still read.
        """
        conn = _serverWithout(Command.RESOLVE, Command.RESOLVE_PTR)
        conn.receiveData(TOR_RESOLVE_4)
        error = self.assertRaises(ProtocolError, conn.nextEvent)
        self.assertEqual(error.reply, bytes.fromhex("00 5b 0000 00000000"))
        conn = _serverWithout(Command.RESOLVE, Command.RESOLVE_PTR)
        conn.receiveData(bytes.fromhex("04 01 0050 7f000001 00"))
        self.assertEqual(
            conn.nextEvent(), SOCKS4Request(Command.CONNECT, "127.0.0.1", 80)
        )

    def test_splitAnywhere(self) -> None:
        """
        Fed byte by byte, each request asks for more until its last byte.
        """
        for make, data in (
            (serverAwaitingRequest, TOR_RESOLVE_5),
            (serverAwaitingRequest, TOR_RESOLVE_PTR),
            (serverAwaitingFirstMessage, TOR_RESOLVE_4),
        ):
            conn = make()
            for byte in data[:-1]:
                conn.receiveData(bytes([byte]))
                self.assertIs(conn.nextEvent(), NEED_DATA)
            conn.receiveData(data[-1:])
            self.assertIsNot(conn.nextEvent(), NEED_DATA)


class ClientSendsTorRequestsTests(SynchronousTestCase):
    """
    A L{ClientConnection} sends the requests exactly as tor-resolve does,
    and ends CLOSED after their reply.
    """

    def test_socks5Resolve(self) -> None:
        """
        The SOCKS5 RESOLVE is tor-resolve's bytes; its success reply ends the
        handshake CLOSED, not ESTABLISHED: nothing is relayed.
        """
        conn = ClientConnection()
        conn.send(SOCKS5Greeting((AuthMethod.NO_AUTHENTICATION,)))
        conn.receiveData(b"\x05\x00")
        conn.nextEvent()
        data = conn.send(SOCKS5Request(Command.RESOLVE, "example.invalid", 0))
        self.assertEqual(data, TOR_RESOLVE_5)
        conn.receiveData(bytes.fromhex("05 00 00 01 c0000207 0000"))
        self.assertEqual(conn.nextEvent(), SOCKS5Reply(0, "192.0.2.7", 0))
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_socks5ResolvePTR(self) -> None:
        """
        The RESOLVE_PTR is tor-resolve's bytes; the reply's name is read.
        """
        conn = ClientConnection()
        conn.send(SOCKS5Greeting((AuthMethod.NO_AUTHENTICATION,)))
        conn.receiveData(b"\x05\x00")
        conn.nextEvent()
        data = conn.send(SOCKS5Request(Command.RESOLVE_PTR, "127.0.0.1", 0))
        self.assertEqual(data, TOR_RESOLVE_PTR)
        conn.receiveData(bytes.fromhex("05 00 00 03 09") + b"localhost\0\0")
        self.assertEqual(conn.nextEvent(), SOCKS5Reply(0, "localhost", 0))
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_socks4aResolve(self) -> None:
        """
        The SOCKS4a RESOLVE is tor-resolve's bytes.
        """
        conn = ClientConnection()
        data = conn.send(SOCKS4Request(Command.RESOLVE, "example.invalid", 0))
        self.assertEqual(data, TOR_RESOLVE_4)
        conn.receiveData(bytes.fromhex("00 5a 0000 c0000207"))
        self.assertEqual(conn.nextEvent(), SOCKS4Reply(90, "192.0.2.7", 0))
        self.assertIs(conn.state, HandshakeState.CLOSED)
