"""
Tests for how L{socks_twisted._wire} connections take bytes in pieces: every
prefix of a message asks for more data, and whatever way a stream is cut,
the events, the answers and the bytes left over are the same.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import (
    NEED_DATA,
    Command,
    HandshakeState,
    MethodSelection,
    ServerConnection,
    SOCKS4Reply,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
)

from ._helpers import (
    Transcript,
    byteChunks,
    driveServer,
    driveSOCKS4Client,
    driveSOCKS5Client,
    splitAt,
    wholeChunks,
)
from ._vectors import ALL_VECTORS

HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"
HTTP_RESPONSE = b"HTTP/1.0 200 OK\r\n\r\n"


class PrefixTests(SynchronousTestCase):
    """
    Every prefix of every valid message is C{NEED_DATA}; the whole message
    is the event.
    """

    def test_everyPrefixNeedsData(self) -> None:
        """
        Each proper prefix of each vector, fed to a fresh connection in the
        state that reads it, gives C{NEED_DATA} and leaves the connection
        RECEIVING.
        """
        for vector in ALL_VECTORS:
            for length in range(len(vector.wire)):
                conn = vector.reader()
                conn.receiveData(vector.wire[:length])
                where = f"{vector.name}: first {length} bytes"
                self.assertIs(conn.nextEvent(), NEED_DATA, where)
                self.assertIs(conn.state, HandshakeState.RECEIVING, where)
                # Asking again changes nothing.
                self.assertIs(conn.nextEvent(), NEED_DATA, where)

    def test_wholeMessageIsEvent(self) -> None:
        """
        Each whole vector gives its message, after any number of
        C{NEED_DATA} answers to its prefixes on the same connection.
        """
        for vector in ALL_VECTORS:
            conn = vector.reader()
            for byte in byteChunks(vector.wire[:-1]):
                conn.receiveData(byte)
                self.assertIs(conn.nextEvent(), NEED_DATA, vector.name)
            conn.receiveData(vector.wire[-1:])
            self.assertEqual(conn.nextEvent(), vector.message, vector.name)
            self.assertIs(conn.nextEvent(), NEED_DATA, vector.name)
            self.assertEqual(conn.takeTrailingData(), b"", vector.name)

    def test_longFieldPrefixes(self) -> None:
        """
        A SOCKS4a request with a 255-byte user ID and a 255-byte host name,
        the longest there is, is C{NEED_DATA} for every prefix.
        """
        userID = b"u" * 255
        name = b"h" * 255
        wire = bytes.fromhex("04 01 0050 00000001") + userID + b"\x00" + name + b"\x00"
        for length in range(len(wire)):
            conn = ServerConnection()
            conn.receiveData(wire[:length])
            self.assertIs(conn.nextEvent(), NEED_DATA, f"first {length} bytes")
            self.assertIs(conn.state, HandshakeState.RECEIVING)
        conn = ServerConnection()
        conn.receiveData(wire)
        self.assertEqual(
            conn.nextEvent(), SOCKS4Request(Command.CONNECT, "h" * 255, 80, userID)
        )


class DeliveryTests(SynchronousTestCase):
    """
    Whole, byte-by-byte and arbitrarily cut deliveries of whole handshakes,
    with the first application bytes in the same chunk as the last message,
    give the same events, answers and trailing data.
    """

    def assertSameEverywhere(
        self,
        data: bytes,
        drive: Callable[[list[bytes]], Transcript],
        natural: list[bytes],
    ) -> Transcript:
        """
        Drive C{data} whole, byte by byte, in the C{natural} chunks and cut
        at every single offset; assert all give the same outcome, and return
        the whole delivery's transcript.
        """
        self.assertEqual(b"".join(natural), data)
        whole = drive(wholeChunks(data))
        deliveries = [drive(byteChunks(data)), drive(natural)]
        deliveries.extend(drive(splitAt(data, [cut])) for cut in range(len(data)))
        for i, transcript in enumerate(deliveries):
            self.assertEqual(transcript.outcome(), whole.outcome(), f"delivery {i}")
        return whole

    def test_serverSOCKS5WithAuthentication(self) -> None:
        """
        Greeting C{05 01 02}, answered by method 02; RFC 1929 request,
        answered by success; the request and, in the same chunk, an HTTP
        request: the HTTP request is exactly the trailing data.
        """
        greeting = bytes.fromhex("05 01 02")
        authentication = bytes.fromhex("01 04 66726564 06 736563726574")
        request = bytes.fromhex("05 01 00 03 0b 6578616d706c652e636f6d 0050")
        data = greeting + authentication + request + HTTP_REQUEST
        whole = self.assertSameEverywhere(
            data,
            lambda chunks: driveServer(chunks, useAuthentication=True),
            [greeting, authentication, request + HTTP_REQUEST],
        )
        self.assertEqual(
            whole.events,
            [
                SOCKS5Greeting((0x02,)),
                UsernamePasswordRequest(b"fred", b"secret"),
                SOCKS5Request(Command.CONNECT, "example.com", 80),
            ],
        )
        self.assertEqual(
            whole.sent,
            [
                bytes.fromhex("05 02"),
                bytes.fromhex("01 00"),
                bytes.fromhex("05 00 00 01 c0000201 0438"),
            ],
        )
        self.assertIsNone(whole.error)
        self.assertEqual(whole.trailing, HTTP_REQUEST)
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_serverSOCKS5NoAuthentication(self) -> None:
        """
        Greeting, request and application bytes all in one chunk, as an
        optimistic client sends them: the application bytes are the trailing
        data.
        """
        greeting = bytes.fromhex("05 01 00")
        request = bytes.fromhex("05 01 00 04 20010db8000000000000000000000001 0050")
        data = greeting + request + HTTP_REQUEST
        whole = self.assertSameEverywhere(
            data,
            lambda chunks: driveServer(chunks, useAuthentication=False),
            [greeting, request + HTTP_REQUEST],
        )
        self.assertEqual(
            whole.events,
            [
                SOCKS5Greeting((0x00,)),
                SOCKS5Request(Command.CONNECT, "2001:db8::1", 80),
            ],
        )
        self.assertEqual(whole.trailing, HTTP_REQUEST)
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_serverSOCKS4a(self) -> None:
        """
        A SOCKS4a request followed in the same chunk by an HTTP request: the
        HTTP request is exactly the trailing data.
        """
        request = bytes.fromhex(
            "04 01 0050 00000001 66726564 00 6578616d706c652e636f6d 00"
        )
        data = request + HTTP_REQUEST
        whole = self.assertSameEverywhere(
            data,
            lambda chunks: driveServer(chunks, useAuthentication=False),
            [data],
        )
        self.assertEqual(
            whole.events, [SOCKS4Request(Command.CONNECT, "example.com", 80, b"fred")]
        )
        self.assertEqual(whole.sent, [bytes.fromhex("00 5a 0438 c0000201")])
        self.assertEqual(whole.trailing, HTTP_REQUEST)
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_serverSOCKS4Bind(self) -> None:
        """
        A SOCKS4 BIND takes two replies before the stream is established;
        bytes that came with the request are the trailing data.
        """
        request = bytes.fromhex("04 02 0015 c0000201 66726564 00")
        data = request + b"early"
        whole = self.assertSameEverywhere(
            data,
            lambda chunks: driveServer(chunks, useAuthentication=False),
            [data],
        )
        self.assertEqual(
            whole.sent,
            [
                bytes.fromhex("00 5a 0438 c0000201"),
                bytes.fromhex("00 5a 0438 c0000201"),
            ],
        )
        self.assertEqual(whole.trailing, b"early")
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_clientSOCKS5(self) -> None:
        """
        Method selection 02, status success, and the reply followed in the
        same chunk by the server's first bytes: those bytes are exactly the
        trailing data.
        """
        selection = bytes.fromhex("05 02")
        status = bytes.fromhex("01 00")
        reply = bytes.fromhex("05 00 00 01 c0000201 0438")
        data = selection + status + reply + HTTP_RESPONSE
        whole = self.assertSameEverywhere(
            data, driveSOCKS5Client, [selection, status, reply + HTTP_RESPONSE]
        )
        self.assertEqual(
            whole.events,
            [
                MethodSelection(0x02),
                UsernamePasswordStatus(0x00),
                SOCKS5Reply(0x00, "192.0.2.1", 1080),
            ],
        )
        self.assertEqual(
            whole.sent,
            [
                bytes.fromhex("01 04 66726564 06 736563726574"),
                bytes.fromhex("05 01 00 03 0b 6578616d706c652e636f6d 0050"),
            ],
        )
        self.assertEqual(whole.trailing, HTTP_RESPONSE)
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_clientSOCKS5Bind(self) -> None:
        """
        A BIND client reads two replies, the second naming the peer, and
        keeps the bytes after them.
        """
        selection = bytes.fromhex("05 00")
        first = bytes.fromhex("05 00 00 01 c0000201 0438")
        second = bytes.fromhex("05 00 00 04 20010db8000000000000000000000001 d431")
        data = selection + first + second + b"220 ftp\r\n"
        whole = self.assertSameEverywhere(
            data,
            lambda chunks: driveSOCKS5Client(chunks, Command.BIND),
            [selection, first, second + b"220 ftp\r\n"],
        )
        self.assertEqual(
            whole.events,
            [
                MethodSelection(0x00),
                SOCKS5Reply(0x00, "192.0.2.1", 1080),
                SOCKS5Reply(0x00, "2001:db8::1", 54321),
            ],
        )
        self.assertEqual(whole.trailing, b"220 ftp\r\n")
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_clientSOCKS4(self) -> None:
        """
        A SOCKS4 reply 90 followed in the same chunk by the server's first
        bytes: those bytes are exactly the trailing data.
        """
        reply = bytes.fromhex("00 5a 0000 00000000")
        data = reply + HTTP_RESPONSE
        whole = self.assertSameEverywhere(data, driveSOCKS4Client, [data])
        self.assertEqual(whole.events, [SOCKS4Reply(90)])
        self.assertEqual(whole.trailing, HTTP_RESPONSE)
        self.assertIs(whole.state, HandshakeState.ESTABLISHED)

    def test_clientRefusedKeepsLeftover(self) -> None:
        """
        After a failure reply the handshake is closed; nothing more is parsed
        and the bytes after the reply are left as trailing data.
        """
        reply = bytes.fromhex("05 05 00 01 00000000 0000")
        selection = bytes.fromhex("05 00")
        data = selection + reply + b"junk"
        whole = self.assertSameEverywhere(data, driveSOCKS5Client, [data])
        self.assertEqual(whole.events[-1], SOCKS5Reply(0x05))
        self.assertEqual(whole.trailing, b"junk")
        self.assertIs(whole.state, HandshakeState.CLOSED)

    def test_errorAfterEventsIsSame(self) -> None:
        """
        A stream that goes wrong after a valid greeting gives the greeting
        event, then the same error, however it is cut.
        """
        data = bytes.fromhex("05 01 00  05 01 00 02 c0000201 0050")
        whole = self.assertSameEverywhere(
            data,
            lambda chunks: driveServer(chunks, useAuthentication=False),
            [data[:3], data[3:]],
        )
        self.assertEqual(whole.events, [SOCKS5Greeting((0x00,))])
        assert whole.error is not None
        self.assertEqual(whole.error[1], bytes.fromhex("05 08 00 01 00000000 0000"))
        self.assertIs(whole.state, HandshakeState.CLOSED)
