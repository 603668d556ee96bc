"""
Tests for L{socks_twisted._wire._gssapi}, the RFC 1961 framing: exact bytes
of each message (written out by hand from RFC 1961 and from what curl's
C{lib/socks_gssapi.c} sends), the incremental reader fed in every split,
and hostile input.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import (
    ABORT_MESSAGE,
    MAX_TOKEN_LENGTH,
    GSSAPIMessage,
    GSSAPIMessageReader,
    MessageType,
    ProtectionLevel,
    ProtocolError,
    contextMessage,
    decodeProtectionLevel,
    encapsulatedMessage,
    encodeProtectionLevel,
    isUnprotectedProtectionToken,
    protectionMessage,
    readEncapsulatedDatagram,
    readGSSAPIMessage,
)

#: What curl --socks5-gssapi-nec sends to ask for confidentiality: VER 1,
#: MTYP 2, LEN 1, the bare octet 2.
NEC_REQUEST = bytes.fromhex("0102000102")


class EncodeTests(SynchronousTestCase):
    """
    The encoders write the layouts of RFC 1961.
    """

    def test_context(self) -> None:
        """
        A context token: 01 01, LEN in network order, the token.
        """
        self.assertEqual(contextMessage(b"\x60\x82"), bytes.fromhex("010100026082"))

    def test_protection(self) -> None:
        """
        A protection-level message is MTYP 2.
        """
        self.assertEqual(protectionMessage(b"\x02"), NEC_REQUEST)

    def test_encapsulated(self) -> None:
        """
        Encapsulated data is MTYP 3.
        """
        self.assertEqual(
            encapsulatedMessage(b"x" * 0x0102), bytes.fromhex("01030102") + b"x" * 258
        )

    def test_abort(self) -> None:
        """
        The abort is two octets, 01 FF, with neither LEN nor token.
        """
        self.assertEqual(ABORT_MESSAGE, b"\x01\xff")
        self.assertEqual(GSSAPIMessage(MessageType.ABORT).toBytes(), b"\x01\xff")

    def test_abortWithToken(self) -> None:
        """
        An abort carries no token.
        """
        self.assertRaises(ValueError, GSSAPIMessage, MessageType.ABORT, b"x")

    def test_longestToken(self) -> None:
        """
        A token of 65535 octets (64 KiB less one) is the longest LEN can say.
        """
        message = contextMessage(b"t" * MAX_TOKEN_LENGTH)
        self.assertEqual(message[:4], bytes.fromhex("0101ffff"))
        self.assertEqual(len(message), 4 + 65535)

    def test_tokenOf64KiB(self) -> None:
        """
        A token of 64 KiB or more cannot be framed: C{ValueError}.
        """
        for length in (65536, 65537, 1 << 20):
            self.assertRaises(ValueError, contextMessage, b"t" * length)
            self.assertRaises(ValueError, encapsulatedMessage, b"t" * length)

    def test_emptyToken(self) -> None:
        """
        No GSS-API token is empty: framing one is refused.
        """
        for messageType in (
            MessageType.CONTEXT,
            MessageType.PROTECTION,
            MessageType.ENCAPSULATED,
        ):
            self.assertRaises(ValueError, GSSAPIMessage, messageType, b"")


class ProtectionLevelTests(SynchronousTestCase):
    """
    The protection-level octet of RFC 1961 section 4.3, and curl's 0.
    """

    def test_values(self) -> None:
        """
        1 integrity, 2 confidentiality, 3 selective; 0 none (curl's).
        """
        self.assertEqual([int(level) for level in ProtectionLevel], [0, 1, 2, 3])
        self.assertEqual(ProtectionLevel.INTEGRITY, 1)
        self.assertEqual(ProtectionLevel.CONFIDENTIALITY, 2)
        self.assertEqual(ProtectionLevel.SELECTIVE, 3)
        self.assertEqual(ProtectionLevel.NONE, 0)

    def test_roundTrip(self) -> None:
        """
        Each level is one octet, read back as itself.
        """
        for level in ProtectionLevel:
            octet = encodeProtectionLevel(level)
            self.assertEqual(octet, bytes([level]))
            self.assertIs(decodeProtectionLevel(octet), level)

    def test_unknownLevel(self) -> None:
        """
        An octet that names no level is a protocol error.
        """
        for value in (4, 0x7F, 0xFF):
            error = self.assertRaises(
                ProtocolError, decodeProtectionLevel, bytes([value])
            )
            self.assertIn(str(value), error.reason)

    def test_wrongLength(self) -> None:
        """
        The unwrapped level is exactly one octet.
        """
        for octets in (b"", b"\x01\x00", b"\x00\x00\x00\x02"):
            self.assertRaises(ProtocolError, decodeProtectionLevel, octets)

    def test_necDetection(self) -> None:
        """
        A one-octet MTYP 2 token is the NEC variant's bare octet; a wrapped
        one (a Kerberos wrap token is 16 octets at least) is not.
        """
        self.assertTrue(isUnprotectedProtectionToken(b"\x02"))
        self.assertFalse(isUnprotectedProtectionToken(b"\x05\x04" + b"\x00" * 30))

    def test_necRequestAsCurlSendsIt(self) -> None:
        """
        The bytes curl --socks5-gssapi-nec sends read as an MTYP 2 message
        whose token is the bare level.
        """
        result = readGSSAPIMessage(NEC_REQUEST)
        assert result is not None
        message, consumed = result
        self.assertEqual(consumed, 5)
        self.assertEqual(message.type, MessageType.PROTECTION)
        self.assertTrue(isUnprotectedProtectionToken(message.token))
        self.assertIs(
            decodeProtectionLevel(message.token), ProtectionLevel.CONFIDENTIALITY
        )


class ReadTests(SynchronousTestCase):
    """
    L{readGSSAPIMessage} on whole and partial messages.
    """

    def test_each(self) -> None:
        """
        Each message type reads back as the message that wrote it.
        """
        for message in (
            GSSAPIMessage(MessageType.CONTEXT, b"ctx"),
            GSSAPIMessage(MessageType.PROTECTION, b"\x01"),
            GSSAPIMessage(MessageType.ENCAPSULATED, b"data" * 100),
            GSSAPIMessage(MessageType.ABORT),
        ):
            wire = message.toBytes()
            self.assertEqual(readGSSAPIMessage(wire + b"next"), (message, len(wire)))

    def test_everyPrefix(self) -> None:
        """
        Every proper prefix of a message is C{None}: not yet.
        """
        wire = contextMessage(b"0123456789")
        for end in range(len(wire)):
            self.assertIsNone(readGSSAPIMessage(wire[:end]))
        self.assertIsNone(readGSSAPIMessage(b"\x01"))

    def test_longestToken(self) -> None:
        """
        LEN 0xFFFF with all its 65535 octets is read.
        """
        wire = encapsulatedMessage(b"\xaa" * 65535)
        result = readGSSAPIMessage(wire)
        assert result is not None
        self.assertEqual(len(result[0].token), 65535)
        self.assertEqual(result[1], 65539)

    def test_memoryview(self) -> None:
        """
        The reader takes any buffer.
        """
        wire = contextMessage(b"abc")
        self.assertEqual(
            readGSSAPIMessage(memoryview(wire)),
            (GSSAPIMessage(MessageType.CONTEXT, b"abc"), 7),
        )


class HostileInputTests(SynchronousTestCase):
    """
    Bad input is a L{ProtocolError} as soon as the offending octet is in,
    with no reply (the connection is closed).
    """

    def assertRefused(
        self, data: bytes, *expected: MessageType, maxTokenLength: int = 65535
    ) -> ProtocolError:
        """
        C{data} is refused by L{readGSSAPIMessage} and the incremental reader.
        """
        kinds = expected or tuple(MessageType)
        error: ProtocolError = self.assertRaises(
            ProtocolError, readGSSAPIMessage, data, kinds, maxTokenLength
        )
        self.assertIsNone(error.reply)
        reader = GSSAPIMessageReader(maxTokenLength)
        reader.receiveData(data)
        again = self.assertRaises(ProtocolError, reader.nextMessage, kinds)
        self.assertEqual(again.reason, error.reason)
        return error

    def test_badVersion(self) -> None:
        """
        VER other than 1 is refused at the first octet, 05 (a SOCKS5 request
        where a GSSAPI message belongs) included.
        """
        for version in (0, 2, 5, 0xFF):
            error = self.assertRefused(bytes([version]))
            self.assertIn(str(version), error.reason)

    def test_unknownType(self) -> None:
        """
        An MTYP RFC 1961 does not define is refused at the second octet.
        """
        for messageType in (0, 4, 0x10, 0xFE):
            error = self.assertRefused(bytes([1, messageType]))
            self.assertIn("unknown", error.reason)

    def test_unexpectedType(self) -> None:
        """
        A known MTYP out of place (data before the context is made, an abort
        from a client) is refused.
        """
        error = self.assertRefused(b"\x01\x03", MessageType.CONTEXT)
        self.assertIn("ENCAPSULATED", error.reason)
        self.assertRefused(b"\x01\xff", MessageType.CONTEXT, MessageType.PROTECTION)

    def test_emptyToken(self) -> None:
        """
        LEN 0 is refused (curl refuses it too).
        """
        for messageType in (1, 2, 3):
            self.assertRefused(bytes([1, messageType, 0, 0]))

    def test_overLimit(self) -> None:
        """
        A header announcing a token longer than the limit is refused at once,
        before the token arrives; one at the limit is waited for.
        """
        error = self.assertRefused(bytes.fromhex("01010401"), maxTokenLength=1024)
        self.assertIn("1025", error.reason)
        self.assertIsNone(
            readGSSAPIMessage(bytes.fromhex("01010400"), maxTokenLength=1024)
        )

    def test_limitRange(self) -> None:
        """
        The limit is 1 to 65535: LEN cannot say more.
        """
        for limit in (0, 65536):
            self.assertRaises(ValueError, GSSAPIMessageReader, limit)
            self.assertRaises(ValueError, readGSSAPIMessage, b"", maxTokenLength=limit)


class ReaderTests(SynchronousTestCase):
    """
    L{GSSAPIMessageReader}, the incremental reader.
    """

    def test_byteByByte(self) -> None:
        """
        Messages fed one octet at a time come out whole, in order.
        """
        messages = [
            GSSAPIMessage(MessageType.CONTEXT, b"token-one"),
            GSSAPIMessage(MessageType.PROTECTION, b"\x02"),
            GSSAPIMessage(MessageType.ENCAPSULATED, bytes(range(256))),
        ]
        wire = b"".join(message.toBytes() for message in messages)
        reader = GSSAPIMessageReader()
        received = []
        for octet in wire:
            reader.receiveData(bytes([octet]))
            message = reader.nextMessage()
            if message is not None:
                received.append(message)
        self.assertEqual(received, messages)
        self.assertEqual(reader.unconsumed(), b"")

    def test_severalInOneChunk(self) -> None:
        """
        Several messages in one chunk come out one per call; what follows
        the last whole one is kept.
        """
        reader = GSSAPIMessageReader()
        reader.receiveData(contextMessage(b"a") + contextMessage(b"b") + b"\x01\x01")
        tokens = [reader.nextMessage(), reader.nextMessage(), reader.nextMessage()]
        self.assertEqual(
            [None if message is None else message.token for message in tokens],
            [b"a", b"b", None],
        )
        self.assertEqual(reader.unconsumed(), b"\x01\x01")

    def test_errorSticks(self) -> None:
        """
        After a protocol error, every later call raises it again, whatever
        arrives.
        """
        reader = GSSAPIMessageReader()
        reader.receiveData(b"\x02")
        first = self.assertRaises(ProtocolError, reader.nextMessage)
        reader.receiveData(contextMessage(b"fine"))
        self.assertIs(self.assertRaises(ProtocolError, reader.nextMessage), first)

    def test_everySplit(self) -> None:
        """
        Any split of two messages into two chunks reads the same.
        """
        wire = contextMessage(b"12345") + encapsulatedMessage(b"67")
        for cut in range(len(wire) + 1):
            reader = GSSAPIMessageReader()
            received = []
            for chunk in (wire[:cut], wire[cut:]):
                reader.receiveData(chunk)
                while (message := reader.nextMessage()) is not None:
                    received.append(message.token)
            self.assertEqual(received, [b"12345", b"67"], cut)


class DatagramTests(SynchronousTestCase):
    """
    L{readEncapsulatedDatagram}: a UDP datagram under protection is one
    whole MTYP 3 message and nothing else.
    """

    def test_token(self) -> None:
        """
        The token of the one message.
        """
        self.assertEqual(
            readEncapsulatedDatagram(bytes.fromhex("01030003") + b"abc"), b"abc"
        )
        self.assertEqual(
            readEncapsulatedDatagram(memoryview(encapsulatedMessage(b"x" * 65535))),
            b"x" * 65535,
        )

    def test_refused(self) -> None:
        """
        Anything else is a L{ProtocolError}, with the reason.
        """
        for datagram, reason in [
            (b"", "truncated"),
            (bytes.fromhex("010300"), "truncated"),
            (bytes.fromhex("01030004") + b"abc", "truncated"),
            (encapsulatedMessage(b"abc") + b"!", "1 octets after"),
            (encapsulatedMessage(b"a") * 2, "5 octets after"),
            (protectionMessage(b"\x01"), "PROTECTION"),
            (contextMessage(b"ctx"), "CONTEXT"),
            (ABORT_MESSAGE, "ABORT"),
            (bytes.fromhex("05030001") + b"a", "version 5"),
            (bytes.fromhex("01030000"), "empty"),
            # A plain SOCKS UDP request: RSV 0, which is no version.
            (bytes.fromhex("000000017f0000010035") + b"q", "version 0"),
        ]:
            with self.subTest(datagram=datagram):
                error = self.assertRaises(
                    ProtocolError, readEncapsulatedDatagram, datagram
                )
                self.assertIn(reason, error.reason)
