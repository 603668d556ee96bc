"""
Where BIND and UDP ASSOCIATE listen (L{serviceInterface}).
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.server._local import serviceInterface


class ServiceInterfaceTests(SynchronousTestCase):
    """
    The address the client reached, when of the family asked; otherwise
    loopback for a loopback or UNIX client, every interface else.
    """

    def test_sameFamily(self) -> None:
        local = IPv4Address("TCP", "192.0.2.7", 1080)
        self.assertEqual(serviceInterface(local, socket.AF_INET), "192.0.2.7")
        local6 = IPv6Address("TCP", "2001:db8::7", 1080)
        self.assertEqual(serviceInterface(local6, socket.AF_INET6), "2001:db8::7")

    def test_otherFamily(self) -> None:
        public = IPv4Address("TCP", "192.0.2.7", 1080)
        self.assertEqual(serviceInterface(public, socket.AF_INET6), "::")
        loopback = IPv4Address("TCP", "127.0.0.1", 1080)
        self.assertEqual(serviceInterface(loopback, socket.AF_INET6), "::1")
        public6 = IPv6Address("TCP", "2001:db8::7", 1080)
        self.assertEqual(serviceInterface(public6, socket.AF_INET), "0.0.0.0")

    def test_unixClient(self) -> None:
        local = UNIXAddress("/run/socks.sock")
        self.assertEqual(serviceInterface(local, socket.AF_INET), "127.0.0.1")
        self.assertEqual(serviceInterface(local, socket.AF_INET6), "::1")
