"""
Tests for what L{socks_twisted._wire} and L{socks_twisted._addresses} keep
once worked out: a cached parse is the answer an uncached C{ipaddress} parse
gives, for every kind of host, and a kept failure reply is the one the
encoder makes.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._addresses import isUnspecified, unmapped
from socks_twisted._wire import (
    AddressType,
    ProtocolError,
    SOCKS5Reply,
    SOCKS5ReplyCode,
    addressTypeOf,
    encodeSOCKS5Address,
    normalizeIP,
    parseIP,
)
from socks_twisted._wire._addresses import decodeSOCKS5Address
from socks_twisted._wire._messages import readSOCKS5Request, socks5Failure

#: Hosts of every kind, some of them spelled in more than one way.
HOSTS = [
    "127.0.0.1",
    "0.0.0.0",
    "::",
    "::1",
    "fe80::1%lo",
    "::ffff:127.0.0.1",
    "2001:DB8::1",
    "example.com",
    "0.0.0.0%x",
    "localhost",
]


class ParseIPTests(SynchronousTestCase):
    """
    L{parseIP} and what is built on it.
    """

    def test_sameAsIpaddress(self) -> None:
        """
        Asked twice (the second answer from the cache), L{parseIP} gives
        what C{ipaddress.ip_address} gives, or C{None} where it refuses.
        """
        for host in HOSTS:
            try:
                expected: object = ipaddress.ip_address(host)
            except ValueError:
                expected = None
            for _ in range(2):
                self.assertEqual(parseIP(host), expected, host)

    def test_addressType(self) -> None:
        """
        L{addressTypeOf} tells literals of each family from names.
        """
        self.assertIs(addressTypeOf("127.0.0.1"), AddressType.IPV4)
        self.assertIs(addressTypeOf("fe80::1%lo"), AddressType.IPV6)
        self.assertIs(addressTypeOf("example.com"), AddressType.DOMAIN)
        self.assertIs(addressTypeOf("0.0.0.0%x"), AddressType.DOMAIN)

    def test_normalizeIPRaisesEveryTime(self) -> None:
        """
        L{normalizeIP} of a name raises L{ValueError} however often it is
        asked (a failure is not cached as an answer).
        """
        for _ in range(2):
            self.assertRaises(ValueError, normalizeIP, "example.com")
        self.assertEqual(normalizeIP("2001:DB8::1%eth0"), "2001:db8::1")

    def test_unspecified(self) -> None:
        """
        L{isUnspecified} holds for the unspecified literals only: not for a
        name, nor for something that only looks like one with a scope.
        """
        self.assertEqual(
            [host for host in HOSTS if isUnspecified(host)], ["0.0.0.0", "::"]
        )

    def test_unmapped(self) -> None:
        """
        L{unmapped} writes an IPv4-mapped address as IPv4, twice alike.
        """
        for _ in range(2):
            self.assertEqual(unmapped("::ffff:127.0.0.1"), "127.0.0.1")

    def test_encodeDecodeRoundTrip(self) -> None:
        """
        An IP literal encodes to its packed form and decodes to its
        canonical text, IPv4 through C{inet_ntoa} as through C{ipaddress}.
        """
        for host in ["127.0.0.1", "10.0.0.255", "::1", "2001:db8::1"]:
            encoded = encodeSOCKS5Address(host, 1080)
            self.assertEqual(encoded[1:-2], ipaddress.ip_address(host).packed, host)
            self.assertEqual(
                decodeSOCKS5Address(encoded, 0, None, None),
                (str(ipaddress.ip_address(host)), 1080, len(encoded)),
            )


class FailureReplyTests(SynchronousTestCase):
    """
    The failure replies kept once made are the replies the encoder makes.
    """

    def test_everyCode(self) -> None:
        """
        For every byte value, asked twice, L{socks5Failure} is the encoding
        of a L{SOCKS5Reply} with that code and an all-zero IPv4 address.
        """
        for code in range(256):
            expected = SOCKS5Reply(code).toBytes()
            self.assertEqual(expected, bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
            for _ in range(2):
                self.assertEqual(socks5Failure(code), expected)

    def test_requestErrorsCarryTheirReplies(self) -> None:
        """
        Each error a request can have carries its own reply: general
        failure for a bad version or RSV, 07 for an unknown command, 08
        for an unknown address type.
        """
        cases = {
            b"\x04\x01\x00\x01": SOCKS5ReplyCode.GENERAL_FAILURE,
            b"\x05\x09\x00\x01": SOCKS5ReplyCode.COMMAND_NOT_SUPPORTED,
            b"\x05\x01\x01\x01": SOCKS5ReplyCode.GENERAL_FAILURE,
            b"\x05\x01\x00\x09": SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED,
            b"\x05\x01\x00\x03\x00": SOCKS5ReplyCode.GENERAL_FAILURE,
        }
        for data, code in cases.items():
            error = self.assertRaises(ProtocolError, readSOCKS5Request, data)
            self.assertEqual(error.reply, SOCKS5Reply(code).toBytes(), data)
