# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Tests for the C{socks5:}, C{socks4a:} and C{socks4:} endpoint strings: the
parser's behaviour, checked by the bytes a parsed endpoint sends, and the
plugins as Twisted's own plugin scan finds them (in this process and in a
fresh interpreter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from socks_twisted.client import SOCKSClientParser

from ._helpers import PROXY_ADDRESS, RecordingFactory, h
from ._plugins import PROJECT_ROOT, ensureProjectPlugins

PROXY = "proxy=tcp\\:127.0.0.1\\:1080"


class Connection:
    """
    What a parsed endpoint does when it connects on a memory reactor.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, reactor: MemoryReactorClock):
        self.reactor = reactor
        endpoint.connect(RecordingFactory())
        self.host, self.port, factory, _, _ = reactor.tcpClients[-1]
        protocol = factory.buildProtocol(PROXY_ADDRESS)
        assert isinstance(protocol, Protocol)
        self.protocol = protocol
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)

    def sent(self) -> bytes:
        """
        Return and forget what was written to the proxy.
        """
        value: bytes = self.transport.value()
        self.transport.clear()
        return value


class ParserTests(SynchronousTestCase):
    """
    L{SOCKSClientParser} turns descriptions into working endpoints.
    """

    def parse(
        self, prefix: str, *args: str, **kwargs: str
    ) -> tuple[IStreamClientEndpoint, MemoryReactorClock]:
        """
        Parse with a fresh memory reactor.
        """
        reactor = MemoryReactorClock()
        return SOCKSClientParser(prefix).parseStreamClient(reactor, *args, **kwargs), (
            reactor
        )

    def connect(self, prefix: str, *args: str, **kwargs: str) -> Connection:
        """
        Parse, then connect the endpoint to a fake proxy.
        """
        endpoint, reactor = self.parse(
            prefix, *args, proxy="tcp:127.0.0.1:1080", **kwargs
        )
        return Connection(endpoint, reactor)

    def test_interfaces(self) -> None:
        """
        Each parser is a plugin providing
        L{IStreamClientEndpointStringParserWithReactor}; unknown prefixes
        are refused.
        """
        for prefix in ("socks5", "socks4a", "socks4"):
            parser = SOCKSClientParser(prefix)
            self.assertTrue(verifyObject(IPlugin, parser))
            self.assertTrue(
                verifyObject(IStreamClientEndpointStringParserWithReactor, parser)
            )
            self.assertEqual(parser.prefix, prefix)
            self.assertIn(prefix, repr(parser))
        self.assertRaises(ValueError, SOCKSClientParser, "socks6")

    def test_socks5Positional(self) -> None:
        """
        C{socks5:HOST:PORT:proxy=...} connects to the proxy and asks for
        HOST:PORT by name.
        """
        connection = self.connect("socks5", "example.com", "80")
        self.assertEqual((connection.host, connection.port), ("127.0.0.1", 1080))
        self.assertEqual(connection.sent(), h("05 01 00"))
        connection.protocol.dataReceived(h("05 00"))
        self.assertEqual(
            connection.sent(), h("05 01 00 03 0b") + b"example.com" + h("00 50")
        )

    def test_socks5Keywords(self) -> None:
        """
        C{host=} and C{port=} work instead of positions; an IPv6 address
        (its colons already unescaped) goes out as ATYP 4.
        """
        connection = self.connect("socks5", host="2001:db8::1", port="443")
        self.assertEqual(connection.sent(), h("05 01 00"))
        connection.protocol.dataReceived(h("05 00"))
        self.assertEqual(
            connection.sent(),
            h("05 01 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 01 bb"),
        )

    def test_socks5Credentials(self) -> None:
        """
        C{username=} and C{password=} offer RFC 1929 and send them.
        """
        connection = self.connect(
            "socks5", "example.com", "80", username="alice", password="p:w"
        )
        self.assertEqual(connection.sent(), h("05 02 00 02"))
        connection.protocol.dataReceived(h("05 02"))
        self.assertEqual(connection.sent(), h("01 05") + b"alice" + h("03") + b"p:w")

    def test_socks5ResolveLocally(self) -> None:
        """
        C{resolveLocally=yes} resolves with the reactor's resolver (the
        memory reactor's answers 127.0.0.1) and sends the address.
        """
        connection = self.connect("socks5", "example.com", "80", resolveLocally="yes")
        self.assertEqual(connection.sent(), h("05 01 00"))
        connection.protocol.dataReceived(h("05 00"))
        self.assertEqual(connection.sent(), h("05 01 00 01 7f 00 00 01 00 50"))

    def test_socks4a(self) -> None:
        """
        C{socks4a:} sends names to the proxy, with C{userID=}.
        """
        connection = self.connect("socks4a", "example.com", "80", userID="fred")
        self.assertEqual(
            connection.sent(),
            h("04 01 00 50 00 00 00 01") + b"fred\x00example.com\x00",
        )

    def test_socks4(self) -> None:
        """
        C{socks4:} resolves names locally and speaks plain SOCKS4.
        """
        connection = self.connect("socks4", "example.com", "80")
        self.assertEqual(connection.sent(), h("04 01 00 50 7f 00 00 01 00"))

    def test_handshakeTimeout(self) -> None:
        """
        C{handshakeTimeout=} sets the timer; C{none} disables it.
        """
        connection = self.connect("socks5", "example.com", "80", handshakeTimeout="2.5")
        [call] = connection.reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), 2.5)
        connection = self.connect(
            "socks5", "example.com", "80", handshakeTimeout="none"
        )
        self.assertEqual(connection.reactor.getDelayedCalls(), [])

    def test_errors(self) -> None:
        """
        Missing, doubled, unknown or malformed parameters are refused with a
        L{ValueError} that says what is wrong.
        """
        cases: list[tuple[str, tuple[str, ...], dict[str, str], str]] = [
            ("socks5", ("example.com", "80"), {}, "proxy= is missing"),
            ("socks5", ("example.com",), {"proxy": "tcp:h:1"}, "port is missing"),
            ("socks5", (), {"port": "80", "proxy": "tcp:h:1"}, "host is missing"),
            ("socks5", ("a", "80"), {"host": "b", "proxy": "tcp:h:1"}, "twice"),
            ("socks5", ("2001", "db8", "1", "80"), {"proxy": "tcp:h:1"}, "escape"),
            ("socks5", ("a", "http"), {"proxy": "tcp:h:1"}, "not a number"),
            ("socks5", ("a", "80"), {"proxy": "tcp:h:1", "userID": "x"}, "unknown"),
            ("socks4", ("a", "80"), {"proxy": "tcp:h:1", "username": "x"}, "unknown"),
            ("socks5", ("a", "80"), {"proxy": "tcp:h:1", "username": "x"}, "both"),
            (
                "socks5",
                ("a", "80"),
                {"proxy": "tcp:h:1", "resolveLocally": "maybe"},
                "yes or no",
            ),
            (
                "socks5",
                ("a", "80"),
                {"proxy": "tcp:h:1", "handshakeTimeout": "soon"},
                "not a number",
            ),
            ("socks4", ("::1", "80"), {"proxy": "tcp:h:1"}, "IPv6"),
            ("socks5", ("a" * 256, "80"), {"proxy": "tcp:h:1"}, "255"),
        ]
        for prefix, args, kwargs, words in cases:
            with self.assertRaises(ValueError) as raised:
                self.parse(prefix, *args, **kwargs)
            self.assertIn(words, str(raised.exception), (prefix, args, kwargs))


class PluginScanTests(SynchronousTestCase):
    """
    Twisted's plugin scan finds the parsers in the project's dropin, and
    C{clientFromString} uses them.
    """

    def setUp(self) -> None:
        ensureProjectPlugins(self)

    def test_scan(self) -> None:
        """
        A plugin scan finds exactly one parser per prefix.
        """
        prefixes = [
            plugin.prefix
            for plugin in getPlugins(IStreamClientEndpointStringParserWithReactor)
            if isinstance(plugin, SOCKSClientParser)
        ]
        self.assertEqual(sorted(prefixes), ["socks4", "socks4a", "socks5"])

    def test_clientFromString(self) -> None:
        """
        C{clientFromString} builds endpoints for nested, escaped
        descriptions: a SOCKS5 hop through a SOCKS4a hop, IPv6 escapes.
        """
        reactor = MemoryReactorClock()
        endpoint = clientFromString(
            reactor,
            "socks5:\\:\\:1:80:proxy=socks4a\\:proxy.test\\:1080"
            "\\:proxy=tcp\\\\\\:127.0.0.1\\\\\\:9050",
        )
        connection = Connection(endpoint, reactor)
        self.assertEqual((connection.host, connection.port), ("127.0.0.1", 9050))
        self.assertEqual(
            connection.sent(), h("04 01 04 38 00 00 00 01 00") + b"proxy.test\x00"
        )
        # The SOCKS4a hop succeeds; the SOCKS5 greeting follows through it.
        connection.protocol.dataReceived(h("00 5a 00 00 00 00 00 00"))
        self.assertEqual(connection.sent(), h("05 01 00"))
        connection.protocol.dataReceived(h("05 00"))
        self.assertEqual(
            connection.sent(),
            h("05 01 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 50"),
        )


class FreshInterpreterTests(SynchronousTestCase):
    """
    In a new interpreter that has the project on its path and nothing else
    done, C{clientFromString} understands the three prefixes.
    """

    def test_subprocess(self) -> None:
        """
        Run C{clientFromString} in a child Python whose only link to the
        project is C{PYTHONPATH}, as for an installed package.
        """
        script = textwrap.dedent(
            f"""
            from twisted.internet.testing import MemoryReactorClock
            from twisted.internet.endpoints import clientFromString
            reactor = MemoryReactorClock()
            for description in [
                r"socks5:example.com:443:{PROXY}:username=u:password=p",
                r"socks4a:example.com:80:{PROXY}:userID=fred",
                r"socks4:192.0.2.1:80:{PROXY}",
                r"socks5:host=\\:\\:1:port=80:{PROXY}",
            ]:
                print(type(clientFromString(reactor, description)).__name__)
            """
        )
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = PROJECT_ROOT
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=directory,
            env=environment,
            capture_output=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertEqual(
            result.stdout.decode().split(),
            [
                "SOCKS5ClientEndpoint",
                "SOCKS4ClientEndpoint",
                "SOCKS4ClientEndpoint",
                "SOCKS5ClientEndpoint",
            ],
        )
