"""
Tests for bad input to L{socks_twisted._wire}: each is a L{ProtocolError}
carrying the exact reply to send, raised as soon as the offending byte
arrives, and raised again on every later C{nextEvent}; and for what the
encoders refuse to write.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import (
    MAX_SOCKS4_FIELD,
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
    UsernamePasswordRequest,
)

from ._helpers import (
    ConnectionFactory,
    clientAwaitingMethodSelection,
    clientAwaitingSOCKS4Reply,
    clientAwaitingSOCKS5Reply,
    serverAwaitingAuthentication,
    serverAwaitingFirstMessage,
    serverAwaitingRequest,
)

#: The SOCKS5 failure replies: VER REP RSV ATYP=1 BND.ADDR=0.0.0.0 BND.PORT=0
GENERAL_FAILURE = bytes.fromhex("05 01 00 01 00000000 0000")
COMMAND_NOT_SUPPORTED = bytes.fromhex("05 07 00 01 00000000 0000")
ADDRESS_TYPE_NOT_SUPPORTED = bytes.fromhex("05 08 00 01 00000000 0000")
#: The SOCKS4 refusal: VN=0 CD=91 DSTPORT=0 DSTIP=0.0.0.0
SOCKS4_REJECTED = bytes.fromhex("00 5b 0000 00000000")
#: RFC 1929 failure status.
AUTHENTICATION_FAILED = bytes.fromhex("01 01")
#: RFC 1928 "no acceptable methods".
NO_ACCEPTABLE_METHODS = bytes.fromhex("05 ff")

#: tor's test_socks.c fills its 2000-byte fields with this, 200 times.
TOR_2000 = b"1234567890" * 200


class RejectionTestCase(SynchronousTestCase):
    """
    The check shared by the rejection tests.
    """

    def assertRejected(
        self,
        reader: ConnectionFactory,
        data: bytes,
        reply: bytes | None,
        decidedAt: int,
    ) -> ProtocolError:
        """
        C{data} is refused with C{reply} once its first C{decidedAt} bytes
        are buffered, and not before:

          - fed whole, C{nextEvent} raises L{ProtocolError} with C{reply} and
            the connection is CLOSED; the error is sticky: the next
            C{nextEvent} raises it again, with or without more data;
          - fed byte by byte, the first C{decidedAt - 1} bytes give
            C{NEED_DATA} and byte C{decidedAt} gives the same error.
        """
        conn = reader()
        conn.receiveData(data)
        error: ProtocolError = self.assertRaises(ProtocolError, conn.nextEvent)
        self.assertEqual(error.reply, reply)
        self.assertIs(conn.state, HandshakeState.CLOSED)
        again = self.assertRaises(ProtocolError, conn.nextEvent)
        self.assertEqual(again.reply, reply)
        self.assertEqual(again.reason, error.reason)
        conn.receiveData(b"\x00" * 10)
        self.assertRaises(ProtocolError, conn.nextEvent)
        self.assertIs(conn.state, HandshakeState.CLOSED)

        conn = reader()
        for i in range(decidedAt - 1):
            conn.receiveData(data[i : i + 1])
            self.assertIs(conn.nextEvent(), NEED_DATA, f"after {i + 1} bytes")
            self.assertIs(conn.state, HandshakeState.RECEIVING)
        conn.receiveData(data[decidedAt - 1 : decidedAt])
        early = self.assertRaises(ProtocolError, conn.nextEvent)
        self.assertEqual(early.reply, reply)
        self.assertEqual(early.reason, error.reason)
        return error


class ServerFirstMessageRejectionTests(RejectionTestCase):
    """
    Bad first messages: neither SOCKS4 nor SOCKS5, bad SOCKS5 greetings, bad
    SOCKS4 requests.
    """

    def test_httpRequest(self) -> None:
        """
        HTTP sent to the SOCKS port is refused at its first byte, C{G},
        without a reply: there is no protocol to reply in.
        """
        error = self.assertRejected(
            serverAwaitingFirstMessage, b"GET / HTTP/1.1\r\n", None, 1
        )
        self.assertIn("0x47", error.reason)

    def test_unknownVersion(self) -> None:
        """
        A first byte other than 4 or 5 is refused without a reply.
        """
        for first in (0x00, 0x01, 0x03, 0x06, 0x16, 0xFF):
            self.assertRejected(
                serverAwaitingFirstMessage, bytes([first, 1, 0]), None, 1
            )

    def test_noMethods(self) -> None:
        """
        A greeting with NMETHODS=0 gets C{05 FF}.
        """
        self.assertRejected(
            serverAwaitingFirstMessage,
            bytes.fromhex("05 00"),
            NO_ACCEPTABLE_METHODS,
            2,
        )

    def test_socks4UnknownCommand(self) -> None:
        """
        A SOCKS4 request with CD 3 gets reply 91, as soon as CD arrives.
        """
        self.assertRejected(
            serverAwaitingFirstMessage,
            bytes.fromhex("04 03 0050 7f000001 00"),
            SOCKS4_REJECTED,
            2,
        )

    def test_socks4UserID256Rejected(self) -> None:
        """
        A user ID of 256 bytes without NUL is refused as soon as the 8 header
        bytes and those 256 bytes are buffered (264 bytes), without waiting
        for more.
        """
        data = bytes.fromhex("04 01 0050 7f000001") + b"u" * 256
        self.assertEqual(len(data), 264)
        self.assertRejected(serverAwaitingFirstMessage, data, SOCKS4_REJECTED, 264)

    def test_socks4UserID255Accepted(self) -> None:
        """
        A user ID of 255 bytes, the most allowed, is read.
        """
        self.assertEqual(MAX_SOCKS4_FIELD, 255)
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("04 01 0050 7f000001") + b"u" * 255 + b"\x00")
        self.assertEqual(
            conn.nextEvent(),
            SOCKS4Request(Command.CONNECT, "127.0.0.1", 80, b"u" * 255),
        )

    def test_socks4aHostname256Rejected(self) -> None:
        """
        A SOCKS4a host name of 256 bytes without NUL is refused as soon as
        the header, the empty user ID and those 256 bytes are buffered.
        """
        data = bytes.fromhex("04 01 0050 00000001 00") + b"h" * 256
        self.assertRejected(serverAwaitingFirstMessage, data, SOCKS4_REJECTED, 265)

    def test_socks4aHostname255Accepted(self) -> None:
        """
        A SOCKS4a host name of 255 bytes, the most allowed, is read.
        """
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("04 01 0050 00000001 00") + b"h" * 255 + b"\x00")
        self.assertEqual(
            conn.nextEvent(), SOCKS4Request(Command.CONNECT, "h" * 255, 80, b"")
        )

    def test_tor2000ByteUserID(self) -> None:
        """
        tor's "2000-byte username": a NUL-terminated user ID of 2000 bytes is
        refused once 264 bytes are buffered.
        """
        data = bytes.fromhex("04 01 0050 01020304") + TOR_2000 + b"\x00"
        self.assertRejected(serverAwaitingFirstMessage, data, SOCKS4_REJECTED, 264)

    def test_tor2000ByteHostname(self) -> None:
        """
        tor's "2000-byte hostname", NUL-terminated: refused once 265 bytes
        are buffered.
        """
        data = bytes.fromhex("04 01 0050 00000001 00") + TOR_2000 + b"\x00"
        self.assertRejected(serverAwaitingFirstMessage, data, SOCKS4_REJECTED, 265)

    def test_tor2000ByteHostnameUnterminated(self) -> None:
        """
        tor's "2000-byte hostname, not terminated": refused once 265 bytes
        are buffered.
        """
        data = bytes.fromhex("04 01 0050 00000001 00") + TOR_2000
        self.assertRejected(serverAwaitingFirstMessage, data, SOCKS4_REJECTED, 265)

    def test_socks4aBadHostnameEncoding(self) -> None:
        """
        A SOCKS4a host name that is neither ASCII nor UTF-8 gets reply 91.
        """
        self.assertRejected(
            serverAwaitingFirstMessage,
            bytes.fromhex("04 01 0050 00000001 00 ff fe 00"),
            SOCKS4_REJECTED,
            12,
        )

    def test_socks4aEmptyHostname(self) -> None:
        """
        An empty SOCKS4a host name gets reply 91.
        """
        self.assertRejected(
            serverAwaitingFirstMessage,
            bytes.fromhex("04 01 0050 00000001 00 00"),
            SOCKS4_REJECTED,
            10,
        )


class ServerAuthenticationRejectionTests(RejectionTestCase):
    """
    Bad RFC 1929 requests get the failure status C{01 01}.
    """

    def test_version2(self) -> None:
        """
        Sub-negotiation version 2 (as in tor's test) is refused at once.
        """
        self.assertRejected(
            serverAwaitingAuthentication,
            bytes.fromhex("02 05 68656c6c6f 05 776f726c64"),
            AUTHENTICATION_FAILED,
            1,
        )

    def test_socks5VersionInstead(self) -> None:
        """
        A client that sends a SOCKS5 request where the RFC 1929 request is
        due is refused at once.
        """
        self.assertRejected(
            serverAwaitingAuthentication,
            bytes.fromhex("05 01 00 01 7f000001 0050"),
            AUTHENTICATION_FAILED,
            1,
        )

    def test_emptyUsername(self) -> None:
        """
        ULEN=0 is refused as soon as ULEN arrives.
        """
        self.assertRejected(
            serverAwaitingAuthentication,
            bytes.fromhex("01 00 00"),
            AUTHENTICATION_FAILED,
            2,
        )


class ServerRequestRejectionTests(RejectionTestCase):
    """
    Bad SOCKS5 requests get the failure reply with the right REP.
    """

    def test_version4(self) -> None:
        """
        A request with VER=4 gets general failure (01).
        """
        self.assertRejected(
            serverAwaitingRequest,
            bytes.fromhex("04 01 00 01 7f000001 0050"),
            GENERAL_FAILURE,
            1,
        )

    def test_reservedNotZero(self) -> None:
        """
        RSV != 0 gets general failure (01).
        """
        self.assertRejected(
            serverAwaitingRequest,
            bytes.fromhex("05 01 01 01 7f000001 0050"),
            GENERAL_FAILURE,
            3,
        )

    def test_unknownCommand(self) -> None:
        """
        CMD 0x09 gets command not supported (07); so do 0x00 and tor's
        CONNECT_DIR (0xF2, withdrawn from tor long ago).
        """
        for command in ("09", "00", "f2"):
            self.assertRejected(
                serverAwaitingRequest,
                bytes.fromhex(f"05 {command} 00 01 7f000001 0050"),
                COMMAND_NOT_SUPPORTED,
                2,
            )

    def test_unknownAddressType(self) -> None:
        """
        ATYP 0x02 gets address type not supported (08).
        """
        self.assertRejected(
            serverAwaitingRequest,
            bytes.fromhex("05 01 00 02 7f000001 0050"),
            ADDRESS_TYPE_NOT_SUPPORTED,
            4,
        )

    def test_zeroLengthDomain(self) -> None:
        """
        A domain name of length 0 gets general failure (01).
        """
        self.assertRejected(
            serverAwaitingRequest,
            bytes.fromhex("05 01 00 03 00 0050"),
            GENERAL_FAILURE,
            5,
        )


class ClientRejectionTests(RejectionTestCase):
    """
    Bad answers from the server.  The client has nothing to reply.
    """

    def test_methodNotOffered(self) -> None:
        """
        A method selection naming a method that was not offered (GSSAPI,
        when 00 and 02 were) is a protocol error.
        """
        self.assertRejected(
            clientAwaitingMethodSelection, bytes.fromhex("05 01"), None, 2
        )

    def test_methodNotOfferedUsernamePassword(self) -> None:
        """
        A client that offered only 00 refuses a selection of 02.
        """

        def reader() -> ClientConnection:
            conn = ClientConnection()
            conn.send(SOCKS5Greeting((AuthMethod.NO_AUTHENTICATION,)))
            return conn

        self.assertRejected(reader, bytes.fromhex("05 02"), None, 2)

    def test_methodSelectionVersion4(self) -> None:
        """
        A method selection with VER=4 is a protocol error.
        """
        self.assertRejected(
            clientAwaitingMethodSelection, bytes.fromhex("04 00"), None, 1
        )

    def test_socks5ReplyVersion4(self) -> None:
        """
        A SOCKS5 reply with VER=4 is a protocol error.
        """
        self.assertRejected(
            clientAwaitingSOCKS5Reply,
            bytes.fromhex("04 00 00 01 c0000201 0438"),
            None,
            1,
        )

    def test_socks5ReplyUnknownAddressType(self) -> None:
        """
        A SOCKS5 reply with ATYP 2 is a protocol error.
        """
        self.assertRejected(
            clientAwaitingSOCKS5Reply,
            bytes.fromhex("05 00 00 02 c0000201 0438"),
            None,
            4,
        )

    def test_socks4ReplyBadVersion(self) -> None:
        """
        A SOCKS4 reply with VN other than 0 (or 4) is a protocol error; for
        instance a SOCKS5 server's answer.
        """
        self.assertRejected(clientAwaitingSOCKS4Reply, bytes.fromhex("05 ff"), None, 1)


class EncodingRefusalTests(SynchronousTestCase):
    """
    What the client refuses to encode raises L{ValueError} from C{send}
    before anything is returned, and leaves the connection able to send
    something else.
    """

    # 63 + 1 + 63 + 1 + 63 + 1 + 63 = 255 bytes.
    NAME_255 = ".".join(["a" * 63] * 4)
    NAME_256 = "b" + NAME_255

    def clientAwaitingRequest(self) -> ClientConnection:
        """
        A client whose server selected no authentication.
        """
        conn = clientAwaitingMethodSelection()
        conn.receiveData(bytes.fromhex("05 00"))
        conn.nextEvent()
        self.assertIs(conn.state, HandshakeState.SENDING)
        return conn

    def test_socks5NameTooLong(self) -> None:
        """
        A SOCKS5 request for a 256-byte name raises L{ValueError}; the state
        is unchanged and a valid request can still be sent.
        """
        self.assertEqual(len(self.NAME_256), 256)
        conn = self.clientAwaitingRequest()
        self.assertRaises(
            ValueError, conn.send, SOCKS5Request(Command.CONNECT, self.NAME_256, 80)
        )
        self.assertIs(conn.state, HandshakeState.SENDING)
        self.assertEqual(
            conn.send(SOCKS5Request(Command.CONNECT, "example.com", 80)),
            bytes.fromhex("05 01 00 03 0b 6578616d706c652e636f6d 0050"),
        )
        self.assertIs(conn.state, HandshakeState.RECEIVING)

    def test_socks5Name255(self) -> None:
        """
        A 255-byte name, the longest there is, is encoded with length FF.
        """
        self.assertEqual(len(self.NAME_255), 255)
        data = SOCKS5Request(Command.CONNECT, self.NAME_255, 80).toBytes()
        self.assertEqual(data[:5], bytes.fromhex("05 01 00 03 ff"))
        self.assertEqual(data[5:-2], self.NAME_255.encode("ascii"))
        self.assertEqual(data[-2:], bytes.fromhex("0050"))

    def test_socks5NonASCIINameTooLong(self) -> None:
        """
        A non-ASCII name whose IDNA encoding is too long raises
        L{ValueError}, not an IDNA error.
        """
        conn = self.clientAwaitingRequest()
        name = ".".join(["bücher"] * 40)
        self.assertRaises(
            ValueError, conn.send, SOCKS5Request(Command.CONNECT, name, 80)
        )
        self.assertIs(conn.state, HandshakeState.SENDING)

    def test_socks4aNameTooLong(self) -> None:
        """
        A SOCKS4a request for a 256-byte name raises L{ValueError} and leaves
        the connection able to send.
        """
        conn = ClientConnection()
        self.assertRaises(
            ValueError, conn.send, SOCKS4Request(Command.CONNECT, self.NAME_256, 80)
        )
        self.assertIs(conn.state, HandshakeState.SENDING)
        conn.send(SOCKS4Request(Command.CONNECT, "127.0.0.1", 80))
        self.assertIs(conn.state, HandshakeState.RECEIVING)

    def test_socks4UserIDTooLong(self) -> None:
        """
        A SOCKS4 user ID of 256 bytes, or one containing NUL, raises
        L{ValueError}.
        """
        conn = ClientConnection()
        for userID in (b"u" * 256, b"fr\x00ed"):
            self.assertRaises(
                ValueError,
                conn.send,
                SOCKS4Request(Command.CONNECT, "127.0.0.1", 80, userID),
            )
            self.assertIs(conn.state, HandshakeState.SENDING)

    def test_usernamePasswordTooLong(self) -> None:
        """
        An RFC 1929 username of 0 or 256 bytes, or a password of 256 bytes,
        raises L{ValueError}.
        """
        for username, password in [
            (b"", b"secret"),
            (b"u" * 256, b"secret"),
            (b"fred", b"p" * 256),
        ]:
            self.assertRaises(
                ValueError, UsernamePasswordRequest(username, password).toBytes
            )

    def test_greetingMethodCount(self) -> None:
        """
        A greeting with no method, or with 256, raises L{ValueError}.
        """
        conn = ClientConnection()
        for methods in [(), (0,) * 256]:
            self.assertRaises(ValueError, conn.send, SOCKS5Greeting(methods))
            self.assertIs(conn.state, HandshakeState.SENDING)

    def test_socks5PortOutOfRange(self) -> None:
        """
        A SOCKS5 request for port 65536 raises L{ValueError}.
        """
        conn = self.clientAwaitingRequest()
        self.assertRaises(
            ValueError, conn.send, SOCKS5Request(Command.CONNECT, "192.0.2.1", 65536)
        )
        self.assertIs(conn.state, HandshakeState.SENDING)

    def test_socks4PortOutOfRange(self) -> None:
        """
        A SOCKS4 request for port 65536 raises L{ValueError}, as
        C{ClientConnection.send} documents for a field that cannot be
        encoded (and as SOCKS5 requests do).
        """
        conn = ClientConnection()
        self.assertRaises(
            ValueError, conn.send, SOCKS4Request(Command.CONNECT, "192.0.2.1", 65536)
        )
        self.assertIs(conn.state, HandshakeState.SENDING)

    def test_socks4aNameWithNUL(self) -> None:
        """
        A SOCKS4a host name containing NUL cannot be sent: the NUL would end
        the name early and the rest would reach the server as the first
        bytes of the relayed stream.  Encoding either raises L{ValueError}
        or gives bytes that a server reads back as the same request with
        nothing left over.
        """
        request = SOCKS4Request(Command.CONNECT, "example.com\x00evil", 80)
        try:
            data = request.toBytes()
        except ValueError:
            return
        conn = ServerConnection()
        conn.receiveData(data)
        self.assertEqual(conn.nextEvent(), request)
        self.assertEqual(conn.takeTrailingData(), b"")

    def test_socks4AddressLooksLikeSOCKS4a(self) -> None:
        """
        A SOCKS4 request for the literal address 0.0.0.1 cannot be told from
        a SOCKS4a request (DSTIP 0.0.0.x, x != 0, announces a host name).
        Encoding either raises L{ValueError} or gives bytes that a server
        reads back as the same request with nothing left over.
        """
        for host in ("0.0.0.1", "0.0.0.255"):
            request = SOCKS4Request(Command.CONNECT, host, 80)
            try:
                data = request.toBytes()
            except ValueError:
                continue
            conn = ServerConnection()
            conn.receiveData(data)
            self.assertEqual(conn.nextEvent(), request, host)
            self.assertEqual(conn.takeTrailingData(), b"", host)


class SendStateTests(SynchronousTestCase):
    """
    C{send} raises L{ValueError} when the connection is not waiting to send,
    or for a method the server does not implement.
    """

    def test_serverCannotSendBeforeReceiving(self) -> None:
        """
        A fresh server has nothing to answer yet.
        """
        conn = ServerConnection()
        self.assertRaises(ValueError, conn.send, SOCKS5Reply(0))
        self.assertIs(conn.state, HandshakeState.RECEIVING)

    def test_clientCannotSendWhileReceiving(self) -> None:
        """
        A client waiting for the method selection cannot send its request.
        """
        conn = clientAwaitingMethodSelection()
        self.assertRaises(
            ValueError, conn.send, SOCKS5Request(Command.CONNECT, "example.com", 80)
        )
        self.assertIs(conn.state, HandshakeState.RECEIVING)

    def test_cannotSendAfterHandshake(self) -> None:
        """
        Once established, neither side sends handshake messages.
        """
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("04 01 0050 7f000001 00"))
        conn.nextEvent()
        conn.send(SOCKS4Reply(90))
        self.assertIs(conn.state, HandshakeState.ESTABLISHED)
        self.assertRaises(ValueError, conn.send, SOCKS4Reply(90))
        self.assertIs(conn.state, HandshakeState.ESTABLISHED)

    def test_serverGSSAPIMethod(self) -> None:
        """
        After selecting GSSAPI a server parses nothing (RFC 1961's messages
        are the caller's) until C{gssapiEstablished}, then the request.
        """
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("05 02 00 01"))
        conn.nextEvent()
        self.assertEqual(conn.send(MethodSelection(AuthMethod.GSSAPI)), b"\x05\x01")
        self.assertIs(conn.state, HandshakeState.SENDING)
        conn.receiveData(bytes.fromhex("05 01 00 01 7f 00 00 01 00 50"))
        self.assertIs(conn.nextEvent(), NEED_DATA)
        conn.gssapiEstablished()
        self.assertIs(conn.state, HandshakeState.RECEIVING)
        request = conn.nextEvent()
        self.assertIsInstance(request, SOCKS5Request)
        self.assertRaises(ValueError, conn.gssapiEstablished)

    def test_gssapiEstablishedUnselected(self) -> None:
        """
        C{gssapiEstablished} without a GSSAPI selection is the caller's bug.
        """
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("05 01 00"))
        conn.nextEvent()
        conn.send(MethodSelection(AuthMethod.NO_AUTHENTICATION))
        self.assertRaises(ValueError, conn.gssapiEstablished)


class SendOrderTests(SynchronousTestCase):
    """
    C{send} raises L{ValueError} for a message of the wrong kind for the
    current step of the handshake ("This message cannot be sent now", as
    C{ServerConnection.send} documents; "it cannot be sent now", as
    C{ClientConnection.send} does), leaving the state unchanged.
    """

    def test_serverReplyBeforeMethodSelection(self) -> None:
        """
        A server that read a greeting must select a method; a reply in its
        place raises L{ValueError}.
        """
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("05 01 00"))
        conn.nextEvent()
        self.assertRaises(ValueError, conn.send, SOCKS5Reply(0))
        self.assertIs(conn.state, HandshakeState.SENDING)

    def test_serverReplyOfOtherVersion(self) -> None:
        """
        A server that read a SOCKS4 request cannot answer with a method
        selection or a SOCKS5 reply.
        """
        conn = ServerConnection()
        conn.receiveData(bytes.fromhex("04 01 0050 7f000001 00"))
        conn.nextEvent()
        self.assertRaises(
            ValueError, conn.send, MethodSelection(AuthMethod.NO_AUTHENTICATION)
        )
        self.assertRaises(ValueError, conn.send, SOCKS5Reply(0))
        self.assertIs(conn.state, HandshakeState.SENDING)

    def test_clientRequestBeforeGreeting(self) -> None:
        """
        A SOCKS5 client must greet before it sends a request or credentials.
        """
        conn = ClientConnection()
        self.assertRaises(
            ValueError, conn.send, SOCKS5Request(Command.CONNECT, "example.com", 80)
        )
        self.assertRaises(
            ValueError, conn.send, UsernamePasswordRequest(b"fred", b"secret")
        )
        self.assertIs(conn.state, HandshakeState.SENDING)
