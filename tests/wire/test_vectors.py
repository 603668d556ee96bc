"""
Tests for the messages of L{socks_twisted._wire} against hand-written hex
vectors from the SOCKS4 / SOCKS4a documents, RFC 1928 and RFC 1929: the hex
decodes to the message object, and the object encodes to exactly the hex.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import (
    AuthMethod,
    Command,
    HandshakeState,
    SOCKS4ReplyCode,
    SOCKS4Request,
    SOCKS5ReplyCode,
    SOCKS5Request,
    encodeName,
    encodeSOCKS5Address,
)

from . import _vectors as v
from ._vectors import Vector


class VectorTestCase(SynchronousTestCase):
    """
    The check shared by the vector tests.
    """

    def assertVector(self, vector: Vector) -> None:
        """
        C{vector.wire} fed whole to a connection in the right state yields
        exactly C{vector.message} and leaves no byte behind; and, unless the
        vector says otherwise, C{vector.message} encodes to C{vector.wire}.
        """
        conn = vector.reader()
        self.assertIs(conn.state, HandshakeState.RECEIVING, vector.name)
        conn.receiveData(vector.wire)
        self.assertEqual(conn.nextEvent(), vector.message, vector.name)
        self.assertEqual(conn.takeTrailingData(), b"", vector.name)
        if vector.encodes:
            self.assertEqual(
                vector.message.toBytes().hex(" "), vector.wire.hex(" "), vector.name
            )


class SOCKS4VectorTests(VectorTestCase):
    """
    SOCKS4 and SOCKS4a requests and replies.
    """

    def test_connect(self) -> None:
        """
        CONNECT to 127.0.0.1:80 with user ID C{fred}.
        """
        self.assertVector(v.SOCKS4_CONNECT)

    def test_connectEmptyUserID(self) -> None:
        """
        CONNECT with an empty user ID: just the terminating NUL.
        """
        self.assertVector(v.SOCKS4_CONNECT_NO_USER)

    def test_bind(self) -> None:
        """
        BIND (CD 2) with user ID C{fred}.
        """
        self.assertVector(v.SOCKS4_BIND)

    def test_socks4aConnect(self) -> None:
        """
        SOCKS4a CONNECT: DSTIP 0.0.0.1, then the user ID and the host name,
        each NUL-terminated.  The request tells it is SOCKS4a.
        """
        self.assertVector(v.SOCKS4A_CONNECT)
        request = v.SOCKS4A_CONNECT.message
        assert isinstance(request, SOCKS4Request)
        self.assertTrue(request.isSOCKS4a)
        socks4 = v.SOCKS4_CONNECT.message
        assert isinstance(socks4, SOCKS4Request)
        self.assertFalse(socks4.isSOCKS4a)

    def test_socks4aAnyNonZeroLastByte(self) -> None:
        """
        Any DSTIP 0.0.0.x with x != 0 means SOCKS4a, not just 0.0.0.1.
        """
        self.assertVector(v.SOCKS4A_CONNECT_DSTIP_255)

    def test_replyGranted(self) -> None:
        """
        Reply 90: request granted.
        """
        self.assertVector(v.SOCKS4_REPLY_GRANTED)
        self.assertVector(v.SOCKS4_REPLY_GRANTED_ADDRESS)
        self.assertEqual(SOCKS4ReplyCode.GRANTED, 90)

    def test_replyRejected(self) -> None:
        """
        Reply 91: request rejected or failed.
        """
        self.assertVector(v.SOCKS4_REPLY_REJECTED)
        self.assertEqual(SOCKS4ReplyCode.REJECTED, 91)

    def test_replyVersion4Accepted(self) -> None:
        """
        A reply with VN=4 instead of 0 is read like VN=0.
        """
        self.assertVector(v.SOCKS4_REPLY_VN4)


class SOCKS5NegotiationVectorTests(VectorTestCase):
    """
    RFC 1928 method negotiation and RFC 1929 username/password.
    """

    def test_greeting(self) -> None:
        """
        A greeting offering methods 00 and 02, and one offering 00 only.
        """
        self.assertVector(v.SOCKS5_GREETING)
        self.assertVector(v.SOCKS5_GREETING_ONE)

    def test_methodSelectionNoAuthentication(self) -> None:
        """
        Method selection 00.
        """
        self.assertVector(v.METHOD_SELECTION_NONE)
        self.assertEqual(AuthMethod.NO_AUTHENTICATION, 0x00)

    def test_methodSelectionUsernamePassword(self) -> None:
        """
        Method selection 02.
        """
        self.assertVector(v.METHOD_SELECTION_PASSWORD)
        self.assertEqual(AuthMethod.USERNAME_PASSWORD, 0x02)

    def test_methodSelectionNoAcceptableMethods(self) -> None:
        """
        Method selection FF, after which the client's handshake is over.
        """
        self.assertVector(v.METHOD_SELECTION_UNACCEPTABLE)
        self.assertEqual(AuthMethod.NO_ACCEPTABLE_METHODS, 0xFF)
        conn = v.METHOD_SELECTION_UNACCEPTABLE.reader()
        conn.receiveData(v.METHOD_SELECTION_UNACCEPTABLE.wire)
        conn.nextEvent()
        self.assertIs(conn.state, HandshakeState.CLOSED)

    def test_usernamePasswordRequest(self) -> None:
        """
        An RFC 1929 request, and one with an empty password (let through to
        the credential checker).
        """
        self.assertVector(v.USERNAME_PASSWORD_REQUEST)
        self.assertVector(v.USERNAME_PASSWORD_REQUEST_EMPTY_PASSWORD)

    def test_usernamePasswordRequestHidesPassword(self) -> None:
        """
        The password of an RFC 1929 request never shows in its C{repr}.
        """
        self.assertNotIn("secret", repr(v.USERNAME_PASSWORD_REQUEST.message))

    def test_usernamePasswordStatus(self) -> None:
        """
        RFC 1929 status 00 (success) and 01 (failure).
        """
        self.assertVector(v.USERNAME_PASSWORD_SUCCESS)
        self.assertVector(v.USERNAME_PASSWORD_FAILURE)


class SOCKS5RequestVectorTests(VectorTestCase):
    """
    RFC 1928 requests.
    """

    def test_connectIPv4(self) -> None:
        """
        CONNECT with ATYP 1: four address bytes.
        """
        self.assertVector(v.SOCKS5_CONNECT_IPV4)

    def test_connectDomain(self) -> None:
        """
        CONNECT with ATYP 3: a length byte, then the name.
        """
        self.assertVector(v.SOCKS5_CONNECT_DOMAIN)

    def test_connectIPv6(self) -> None:
        """
        CONNECT with ATYP 4: all sixteen address bytes, making a 22-byte
        message (unlike encoders that send only four of them).
        """
        self.assertVector(v.SOCKS5_CONNECT_IPV6)
        self.assertEqual(len(v.SOCKS5_CONNECT_IPV6.wire), 22)
        self.assertEqual(len(v.SOCKS5_CONNECT_IPV6.message.toBytes()), 22)

    def test_bind(self) -> None:
        """
        BIND (CMD 2).
        """
        self.assertVector(v.SOCKS5_BIND)

    def test_udpAssociate(self) -> None:
        """
        UDP ASSOCIATE (CMD 3), with the all-zero address of a client that
        does not know its own, and with an IPv6 address.
        """
        self.assertVector(v.SOCKS5_UDP_ASSOCIATE)
        self.assertVector(v.SOCKS5_UDP_ASSOCIATE_IPV6)

    def test_addressEncoding(self) -> None:
        """
        L{encodeSOCKS5Address} writes ATYP, the address and the port, as in
        requests, replies and UDP headers.
        """
        self.assertEqual(
            encodeSOCKS5Address("192.0.2.1", 80), bytes.fromhex("01 c0000201 0050")
        )
        self.assertEqual(
            encodeSOCKS5Address("2001:db8::1", 80),
            bytes.fromhex("04 20010db8000000000000000000000001 0050"),
        )
        self.assertEqual(
            encodeSOCKS5Address("example.com", 80),
            bytes.fromhex("03 0b 6578616d706c652e636f6d 0050"),
        )


class SOCKS5ReplyVectorTests(VectorTestCase):
    """
    RFC 1928 replies.
    """

    def test_successIPv4(self) -> None:
        """
        A success reply with an IPv4 BND.ADDR.
        """
        self.assertVector(v.SOCKS5_REPLY_IPV4)

    def test_successIPv6(self) -> None:
        """
        A success reply with an IPv6 BND.ADDR, all sixteen bytes.
        """
        self.assertVector(v.SOCKS5_REPLY_IPV6)

    def test_successDomain(self) -> None:
        """
        A success reply with a domain BND.ADDR.
        """
        self.assertVector(v.SOCKS5_REPLY_DOMAIN)

    def test_failureCodes(self) -> None:
        """
        Each failure code 01 to 08, with the all-zero IPv4 BND.ADDR, ends the
        client's handshake.
        """
        self.assertEqual(len(v.SOCKS5_REPLY_FAILURES), 8)
        for vector in v.SOCKS5_REPLY_FAILURES:
            self.assertVector(vector)
            conn = vector.reader()
            conn.receiveData(vector.wire)
            conn.nextEvent()
            self.assertIs(conn.state, HandshakeState.CLOSED, vector.name)

    def test_replyCodeNames(self) -> None:
        """
        The reply code constants have the values of RFC 1928 section 6.
        """
        self.assertEqual(
            [int(code) for code in SOCKS5ReplyCode], list(range(0x00, 0x08 + 1))
        )


class IDNATests(SynchronousTestCase):
    """
    Non-ASCII host names go on the wire as IDNA A-labels.
    """

    # "xn--bcher-kva.example", 21 bytes.
    A_LABEL = bytes.fromhex("786e2d2d62636865722d6b7661 2e 6578616d706c65")

    def test_encodeName(self) -> None:
        """
        C{bücher.example} encodes as C{xn--bcher-kva.example}.
        """
        self.assertEqual(encodeName("bücher.example"), b"xn--bcher-kva.example")
        self.assertEqual(self.A_LABEL, b"xn--bcher-kva.example")

    def test_encodeNameASCII(self) -> None:
        """
        An ASCII name is sent as it is.
        """
        self.assertEqual(encodeName("example.com"), b"example.com")

    def test_socks5Request(self) -> None:
        """
        A SOCKS5 request for C{bücher.example} carries the A-label.
        """
        expected = (
            bytes.fromhex("05 01 00 03 15") + self.A_LABEL + bytes.fromhex("0050")
        )
        self.assertEqual(
            SOCKS5Request(Command.CONNECT, "bücher.example", 80).toBytes(), expected
        )

    def test_socks4aRequest(self) -> None:
        """
        A SOCKS4a request for C{bücher.example} carries the A-label.
        """
        expected = bytes.fromhex("04 01 0050 00000001 00") + self.A_LABEL + b"\x00"
        self.assertEqual(
            SOCKS4Request(Command.CONNECT, "bücher.example", 80).toBytes(), expected
        )
