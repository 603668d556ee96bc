"""
What a session tells the operator, on fake transports: its start and end
events, its outcome, and the server's metrics.
"""

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.policy import parseRules
from socks_twisted.server import SOCKSServerFactory
from socks_twisted.server._limits import LimitSettings
from socks_twisted.server._metrics import metricsSite
from socks_twisted.server._session import SOCKSServerProtocol

from ._fakes import FakeListeners, connectClient, makeFactory
from .test_session import CONNECT_IPV4, GREETING_NO_AUTH, LogCapture


def sample(factory: SOCKSServerFactory, name: str, **labels: str) -> float:
    """
    The value of one sample of C{factory}'s metrics (0 if absent).
    """
    value = factory.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def sessions(
    factory: SOCKSServerFactory, outcome: str, command: str = "connect"
) -> float:
    return sample(
        factory, "socks_sessions_total", version="5", command=command, outcome=outcome
    )


class EventTests(SynchronousTestCase):
    """
    Each session logs a start event once its request is read and an end
    event, both carrying its id.
    """

    def test_startAndEnd(self) -> None:
        """
        The start event names who asks for what; the end event adds the
        address dialled, the outbound address, the outcome, the rule and
        typed counts; both carry the same short id.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4 + b"abc")
        [start] = [e for e in log.events if "SOCKS request" in e.get("log_format", "")]
        self.assertEqual(start["session"], protocol.sessionID)
        self.assertEqual(start["target"], "127.0.0.1:80")
        self.assertEqual(start["command"], "CONNECT")
        target, _ = dialler.attempts[0].succeed(bound=("127.0.0.1", 40000))
        target.dataReceived(b"defg")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        target.connectionLost(Failure(error.ConnectionDone()))
        [end] = log.sessionEvents()[-1:]
        self.assertEqual(end["session"], protocol.sessionID)
        self.assertEqual(end["dialled"], "127.0.0.1:80")
        self.assertEqual(end["outbound"], "127.0.0.1:40000")
        self.assertEqual(end["outcome"], "success")
        self.assertEqual(end["rule"], "default rule (allow)")
        self.assertEqual((end["bytesFromClient"], end["bytesToClient"]), (3, 4))
        self.assertIsInstance(end["duration"], float)

    def test_idsDiffer(self) -> None:
        """
        Two sessions have two ids.
        """
        factory, _, _ = makeFactory()
        first, _ = connectClient(factory)
        second, _ = connectClient(factory)
        self.assertNotEqual(first.sessionID, second.sessionID)


class OutcomeTests(SynchronousTestCase):
    """
    Each way a session can end is counted under its outcome.
    """

    def ended(self, factory: SOCKSServerFactory, protocol: SOCKSServerProtocol) -> None:
        protocol.connectionLost(Failure(error.ConnectionDone()))

    def test_dialFailures(self) -> None:
        """
        Refused, unreachable and timed-out dials, and a success.
        """
        factory, _, dialler = makeFactory(connectTimeout=5.0)
        for failure in (
            error.ConnectionRefusedError(),
            error.DNSLookupError("x"),
            error.TimeoutError(),
        ):
            protocol, _ = connectClient(factory)
            protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
            dialler.attempts[-1].fail(failure)
            self.ended(factory, protocol)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        target, _ = dialler.attempts[-1].succeed()
        self.assertEqual(
            sample(factory, "socks_sessions_active", command="connect"), 1.0
        )
        self.ended(factory, protocol)
        target.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(
            sample(factory, "socks_sessions_active", command="connect"), 0.0
        )
        for outcome in ("refused", "unreachable", "timeout", "success"):
            self.assertEqual(sessions(factory, outcome), 1.0, outcome)
        self.assertEqual(sample(factory, "socks_connect_seconds_count"), 1.0)
        self.assertEqual(sample(factory, "socks_handshake_seconds_count"), 4.0)

    def test_deniedByRule(self) -> None:
        """
        A denial is counted under its outcome and its rule.
        """
        factory, _, _ = makeFactory()
        factory.setRules(
            parseRules(
                [{"action": "deny", "name": "no web", "ports": [80]}], {}, "t.toml"
            ),
            {},
        )
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        self.ended(factory, protocol)
        self.assertEqual(sessions(factory, "denied"), 1.0)
        self.assertEqual(
            sample(factory, "socks_policy_denials_total", rule='rule 1 ("no web")'),
            1.0,
        )

    def test_authFailedAndProtocolError(self) -> None:
        """
        A wrong password, a malformed request and a client that leaves.
        """
        factory, _, _ = makeFactory(users={b"a": b"b"})
        protocol, _ = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01 02 01 01 61 01 78"))
        self.ended(factory, protocol)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01 02 01 01 61 01 62 05 09 00 01"))
        protocol.dataReceived(bytes.fromhex("7f000001 0050"))
        self.ended(factory, protocol)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(b"\x05")
        self.ended(factory, protocol)
        labels = {"version": "5", "command": "-"}
        self.assertEqual(
            sample(factory, "socks_sessions_total", outcome="auth_failed", **labels),
            1.0,
        )
        self.assertEqual(
            sample(factory, "socks_auth_failures_total", method="username/password"),
            1.0,
        )
        self.assertEqual(
            sample(
                factory,
                "socks_sessions_total",
                outcome="protocol_error",
                **labels,
            ),
            1.0,
        )
        self.assertEqual(
            sample(
                factory,
                "socks_sessions_total",
                outcome="client_left",
                version="-",
                command="-",
            ),
            1.0,
        )

    def test_refusedAtAccept(self) -> None:
        """
        Connections refused at accept are counted by reason.
        """
        factory, _, _ = makeFactory(
            maxSessions=2, limits=LimitSettings(sessionsPerClient=1)
        )
        factory.setRules(
            parseRules(
                [{"action": "allow", "from": ["127.0.0.0/8"]}, {"action": "deny"}],
                {},
                "t.toml",
            ),
            {},
        )
        connectClient(factory)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)))
        connectClient(factory, client=IPv4Address("TCP", "127.0.0.2", 1))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.3", 1)))
        for reason in ("per_client", "no_rule", "max_sessions"):
            self.assertEqual(
                sample(factory, "socks_refused_total", reason=reason), 1.0, reason
            )


class BytesTests(SynchronousTestCase):
    """
    Byte counters advance while a session runs.
    """

    def test_countedEverySecond(self) -> None:
        """
        Bytes relayed show in the metrics within a second, before the
        session ends, and are counted once.
        """
        factory, reactor, dialler = makeFactory()
        metricsSite(factory.metrics)  # served: open sessions are counted too
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        target, _ = dialler.attempts[0].succeed()
        protocol.dataReceived(b"x" * 1000)
        target.dataReceived(b"y" * 300)
        self.assertEqual(sample(factory, "socks_bytes_total", direction="up"), 0.0)
        reactor.advance(1.0)
        self.assertEqual(sample(factory, "socks_bytes_total", direction="up"), 1000.0)
        self.assertEqual(sample(factory, "socks_bytes_total", direction="down"), 300.0)
        protocol.dataReceived(b"x" * 24)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        target.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(sample(factory, "socks_bytes_total", direction="up"), 1024.0)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_notServedCountedAtEnd(self) -> None:
        """
        Metrics nobody serves cost no timer: a session's bytes are counted
        as it ends.
        """
        factory, reactor, dialler = makeFactory()
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        target, _ = dialler.attempts[0].succeed()
        protocol.dataReceived(b"x" * 10)
        self.assertEqual(reactor.getDelayedCalls(), [])
        protocol.connectionLost(Failure(error.ConnectionDone()))
        target.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(sample(factory, "socks_bytes_total", direction="up"), 10.0)

    def test_udp(self) -> None:
        """
        An association's datagrams and drops are counted when it ends.
        """
        listeners = FakeListeners()
        factory, _, _ = makeFactory(listeners=listeners)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            GREETING_NO_AUTH + bytes.fromhex("05 03 00 01 00000000 0000")
        )
        [(_, association)] = listeners.udp
        header = bytes.fromhex("0000 00 01 7f000001 0035")
        association.datagramReceived(header + b"q", ("127.0.0.1", 5000))
        association.datagramReceived(b"\x00", ("127.0.0.1", 5000))
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(
            sample(factory, "socks_udp_datagrams_total", direction="up"), 1.0
        )
        self.assertEqual(
            sample(factory, "socks_udp_dropped_total", reason="malformed header"), 1.0
        )
        self.assertEqual(sessions(factory, "success", command="udp"), 1.0)

    def test_udpCountedWhileOpen(self) -> None:
        """
        When the metrics are served, an open association's datagrams and
        drops are counted every second, and each once.
        """
        listeners = FakeListeners()
        factory, reactor, _ = makeFactory(listeners=listeners)
        metricsSite(factory.metrics)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            GREETING_NO_AUTH + bytes.fromhex("05 03 00 01 00000000 0000")
        )
        [(_, association)] = listeners.udp
        header = bytes.fromhex("0000 00 01 7f000001 0035")
        association.datagramReceived(header + b"q", ("127.0.0.1", 5000))
        association.datagramReceived(b"\x00", ("127.0.0.1", 5000))
        reactor.advance(1.0)
        up = sample(factory, "socks_udp_datagrams_total", direction="up")
        self.assertEqual(up, 1.0)
        association.datagramReceived(header + b"r", ("127.0.0.1", 5000))
        protocol.connectionLost(Failure(error.ConnectionDone()))
        up = sample(factory, "socks_udp_datagrams_total", direction="up")
        self.assertEqual(up, 2.0)
        dropped = sample(factory, "socks_udp_dropped_total", reason="malformed header")
        self.assertEqual(dropped, 1.0)
