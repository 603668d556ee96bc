"""
L{ServerMetrics}: each method moves its own sample and no other, the
exposition names every metric of the contract, the C{user} label, registries
of their own, the process collectors, and L{metricsSite} over real HTTP on
the loopback.
"""

import subprocess
import sys
from collections.abc import Mapping
from typing import cast

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, ResponseDone
from twisted.web.iweb import IResponse

from socks_twisted.server._metrics import (
    CONNECT_BUCKETS,
    HANDSHAKE_BUCKETS,
    ServerMetrics,
    metricsSite,
)

from .test_session import LogCapture

# Every metric of the contract, as exposed, and its type.
CONTRACT = {
    "socks_sessions_total": "counter",
    "socks_sessions_active": "gauge",
    "socks_bytes_total": "counter",
    "socks_handshake_seconds": "histogram",
    "socks_connect_seconds": "histogram",
    "socks_auth_failures_total": "counter",
    "socks_refused_total": "counter",
    "socks_policy_denials_total": "counter",
    "socks_udp_datagrams_total": "counter",
    "socks_udp_dropped_total": "counter",
}

# The metric families as collected: a counter's without "_total" (the text
# exposition adds it back).
_FAMILY = {name: name.removesuffix("_total") for name in CONTRACT}


def samples(
    registry: CollectorRegistry,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    Every sample of C{registry} but the C{_created} timestamps (which move
    as children are made), by name and labels.
    """
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


class ServerMetricsTests(SynchronousTestCase):
    """
    Each method of L{ServerMetrics} moves exactly the sample it is for.
    """

    def setUp(self) -> None:
        self.metrics = ServerMetrics(processCollectors=False)
        self.registry = self.metrics.registry

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """
        The value of the sample C{name} with C{labels}, or L{None} if there
        is none.
        """
        return self.registry.get_sample_value(name, dict(labels or {}))

    def assertMoves(
        self,
        expected: Mapping[tuple[str, frozenset[tuple[str, str]]], float],
        before: Mapping[tuple[str, frozenset[tuple[str, str]]], float],
    ) -> None:
        """
        The registry's samples are C{before} but for the changes in
        C{expected} (a sample not in C{before} is new, at its value).
        """
        after = samples(self.registry)
        changed = {
            key: value for key, value in after.items() if before.get(key) != value
        }
        self.assertEqual(changed, dict(expected))

    def test_sessionStarted(self) -> None:
        """
        C{sessionStarted} adds one to C{socks_sessions_active} of its
        command, and moves nothing else.
        """
        before = samples(self.registry)
        self.metrics.sessionStarted("bind")
        self.assertMoves(
            {("socks_sessions_active", frozenset({("command", "bind")})): 1.0},
            before,
        )

    def test_sessionEnded(self) -> None:
        """
        C{sessionEnded} counts the session in C{socks_sessions_total} by
        version, command and outcome, and takes it off
        C{socks_sessions_active}.
        """
        self.metrics.sessionStarted("connect")
        self.metrics.sessionStarted("connect")
        before = samples(self.registry)
        self.metrics.sessionEnded("5", "connect", "success")
        self.assertMoves(
            {
                (
                    "socks_sessions_total",
                    frozenset(
                        {
                            ("version", "5"),
                            ("command", "connect"),
                            ("outcome", "success"),
                        }
                    ),
                ): 1.0,
                ("socks_sessions_active", frozenset({("command", "connect")})): 1.0,
            },
            before,
        )
        self.metrics.sessionEnded("5", "connect", "success")
        labels = {"version": "5", "command": "connect", "outcome": "success"}
        self.assertEqual(self.value("socks_sessions_total", labels), 2.0)
        self.assertEqual(
            self.value("socks_sessions_active", {"command": "connect"}), 0.0
        )

    def test_sessionEndedNotStarted(self) -> None:
        """
        A session that ended before its request was read
        (C{started=False}) is counted, with C{"-"} for what is not known,
        and leaves C{socks_sessions_active} as it was.
        """
        before = samples(self.registry)
        self.metrics.sessionEnded("-", "-", "protocol_error", started=False)
        self.assertMoves(
            {
                (
                    "socks_sessions_total",
                    frozenset(
                        {
                            ("version", "-"),
                            ("command", "-"),
                            ("outcome", "protocol_error"),
                        }
                    ),
                ): 1.0
            },
            before,
        )

    def test_sessionEndedUserWithoutUserLabel(self) -> None:
        """
        Without C{userLabel}, a user given to C{sessionEnded} adds no
        label.
        """
        self.metrics.sessionEnded("5", "udp", "timeout", user="alice", started=False)
        self.assertEqual(
            self.value(
                "socks_sessions_total",
                {"version": "5", "command": "udp", "outcome": "timeout"},
            ),
            1.0,
        )

    def test_transferred(self) -> None:
        """
        C{transferred} adds its bytes to C{socks_bytes_total}: C{up} and
        C{down} by direction.
        """
        before = samples(self.registry)
        self.metrics.transferred(100, 2000)
        self.metrics.transferred(1, 0, user="alice")
        self.assertMoves(
            {
                ("socks_bytes_total", frozenset({("direction", "up")})): 101.0,
                ("socks_bytes_total", frozenset({("direction", "down")})): 2000.0,
            },
            before,
        )

    def test_transferredNothing(self) -> None:
        """
        C{transferred} of no bytes (an idle session reporting) moves
        nothing.
        """
        before = samples(self.registry)
        self.metrics.transferred(0, 0)
        self.assertMoves({}, before)

    def test_handshakeTook(self) -> None:
        """
        C{handshakeTook} observes its seconds in
        C{socks_handshake_seconds}: the count, the sum, and the buckets
        from the first at least as long.
        """
        before = samples(self.registry)
        self.metrics.handshakeTook(0.003)
        expected = {
            (
                "socks_handshake_seconds_bucket",
                frozenset({("le", repr(bound))}),
            ): 1.0
            for bound in HANDSHAKE_BUCKETS
            if bound >= 0.003
        }
        expected[("socks_handshake_seconds_bucket", frozenset({("le", "+Inf")}))] = 1.0
        expected[("socks_handshake_seconds_count", frozenset())] = 1.0
        expected[("socks_handshake_seconds_sum", frozenset())] = 0.003
        self.assertMoves(expected, before)

    def test_connectTook(self) -> None:
        """
        C{connectTook} observes its seconds in C{socks_connect_seconds}.
        """
        before = samples(self.registry)
        self.metrics.connectTook(12.0)
        expected = {
            ("socks_connect_seconds_bucket", frozenset({("le", repr(bound))})): 1.0
            for bound in CONNECT_BUCKETS
            if bound >= 12.0
        }
        expected[("socks_connect_seconds_bucket", frozenset({("le", "+Inf")}))] = 1.0
        expected[("socks_connect_seconds_count", frozenset())] = 1.0
        expected[("socks_connect_seconds_sum", frozenset())] = 12.0
        self.assertMoves(expected, before)

    def test_buckets(self) -> None:
        """
        The histograms' buckets are the documented ones, from milliseconds
        to past the default timeouts, then C{+Inf}.
        """
        for name, bounds in [
            ("socks_handshake_seconds", HANDSHAKE_BUCKETS),
            ("socks_connect_seconds", CONNECT_BUCKETS),
        ]:
            exposed = [
                dict(labels)["le"]
                for (sample, labels) in samples(self.registry)
                if sample == name + "_bucket"
            ]
            self.assertEqual(
                sorted(exposed, key=float),
                [repr(bound) for bound in bounds] + ["+Inf"],
            )
            self.assertEqual(bounds[0], 0.001)
            self.assertGreater(bounds[-1], 30.0)

    def test_authFailed(self) -> None:
        """
        C{authFailed} counts in C{socks_auth_failures_total} by method.
        """
        before = samples(self.registry)
        self.metrics.authFailed("username/password")
        self.metrics.authFailed("username/password")
        self.assertMoves(
            {
                (
                    "socks_auth_failures_total",
                    frozenset({("method", "username/password")}),
                ): 2.0
            },
            before,
        )

    def test_refused(self) -> None:
        """
        C{refused} counts in C{socks_refused_total} by reason.
        """
        before = samples(self.registry)
        self.metrics.refused("per_client")
        self.assertMoves(
            {("socks_refused_total", frozenset({("reason", "per_client")})): 1.0},
            before,
        )

    def test_refusalReasonsFromTheStart(self) -> None:
        """
        Every refusal reason, the active sessions of every command and both
        directions of bytes and datagrams are exposed at 0 before anything
        happens, so that a rate over the first event sees it.
        """
        for reason in [
            "max_sessions",
            "descriptors",
            "rate",
            "per_client",
            "per_user",
            "back_off",
            "no_rule",
        ]:
            self.assertEqual(self.value("socks_refused_total", {"reason": reason}), 0.0)
        for command in ["connect", "bind", "udp", "resolve", "resolve_ptr"]:
            self.assertEqual(
                self.value("socks_sessions_active", {"command": command}), 0.0
            )
        for direction in ["up", "down"]:
            self.assertEqual(
                self.value("socks_bytes_total", {"direction": direction}), 0.0
            )
            self.assertEqual(
                self.value("socks_udp_datagrams_total", {"direction": direction}),
                0.0,
            )

    def test_denied(self) -> None:
        """
        C{denied} counts in C{socks_policy_denials_total} by the rule's
        description.
        """
        before = samples(self.registry)
        self.metrics.denied('rule 3 ("staff web")')
        self.metrics.denied("default rule (deny self)")
        self.assertMoves(
            {
                (
                    "socks_policy_denials_total",
                    frozenset({("rule", 'rule 3 ("staff web")')}),
                ): 1.0,
                (
                    "socks_policy_denials_total",
                    frozenset({("rule", "default rule (deny self)")}),
                ): 1.0,
            },
            before,
        )

    def test_udpDatagrams(self) -> None:
        """
        C{udpDatagrams} counts in C{socks_udp_datagrams_total} by
        direction, one by default.
        """
        before = samples(self.registry)
        self.metrics.udpDatagrams("up")
        self.metrics.udpDatagrams("down", 5)
        self.assertMoves(
            {
                ("socks_udp_datagrams_total", frozenset({("direction", "up")})): 1.0,
                (
                    "socks_udp_datagrams_total",
                    frozenset({("direction", "down")}),
                ): 5.0,
            },
            before,
        )

    def test_udpDropped(self) -> None:
        """
        C{udpDropped} counts in C{socks_udp_dropped_total} by reason, one
        by default.
        """
        before = samples(self.registry)
        self.metrics.udpDropped("fragmented")
        self.metrics.udpDropped("denied", 3)
        self.assertMoves(
            {
                ("socks_udp_dropped_total", frozenset({("reason", "fragmented")})): 1.0,
                ("socks_udp_dropped_total", frozenset({("reason", "denied")})): 3.0,
            },
            before,
        )

    def test_exposition(self) -> None:
        """
        The text exposition names every metric of the contract with its
        C{HELP} and C{TYPE} lines, and its samples under the contract's
        name.
        """
        self.metrics.sessionEnded("4a", "connect", "refused", started=False)
        self.metrics.authFailed("username/password")
        self.metrics.denied("rule 1")
        self.metrics.udpDropped("too_big")
        text = generate_latest(self.registry).decode("utf-8")
        lines = text.splitlines()
        for name, kind in CONTRACT.items():
            self.assertIn(f"# TYPE {name} {kind}", lines)
            self.assertTrue(
                any(line.startswith(f"# HELP {name} ") for line in lines), name
            )
            sample = name + "_count" if kind == "histogram" else name
            self.assertTrue(
                any(
                    line.startswith(sample + "{") or line.startswith(sample + " ")
                    for line in lines
                ),
                name,
            )


class UserLabelTests(SynchronousTestCase):
    """
    C{userLabel=True} adds a C{user} label to C{socks_sessions_total} and
    C{socks_bytes_total}, and to nothing else.
    """

    def setUp(self) -> None:
        self.metrics = ServerMetrics(userLabel=True, processCollectors=False)
        self.registry = self.metrics.registry

    def test_sessionsByUser(self) -> None:
        """
        A session's user labels its count; no user is C{"-"}.
        """
        self.metrics.sessionStarted("connect")
        self.metrics.sessionEnded("5", "connect", "success", user="alice")
        self.metrics.sessionEnded("4", "connect", "denied", started=False)
        labels = {"version": "5", "command": "connect", "outcome": "success"}
        self.assertEqual(
            self.registry.get_sample_value(
                "socks_sessions_total", {**labels, "user": "alice"}
            ),
            1.0,
        )
        self.assertEqual(
            self.registry.get_sample_value(
                "socks_sessions_total",
                {
                    "version": "4",
                    "command": "connect",
                    "outcome": "denied",
                    "user": "-",
                },
            ),
            1.0,
        )
        self.assertIsNone(
            self.registry.get_sample_value("socks_sessions_total", labels)
        )
        self.assertEqual(
            self.registry.get_sample_value(
                "socks_sessions_active", {"command": "connect"}
            ),
            0.0,
        )

    def test_bytesByUser(self) -> None:
        """
        Bytes are counted by direction and user; no user is C{"-"}.
        """
        self.metrics.transferred(10, 20, user="alice")
        self.metrics.transferred(5, 0, user="alice")
        self.metrics.transferred(1, 2)
        for labels, value in [
            ({"direction": "up", "user": "alice"}, 15.0),
            ({"direction": "down", "user": "alice"}, 20.0),
            ({"direction": "up", "user": "-"}, 1.0),
            ({"direction": "down", "user": "-"}, 2.0),
        ]:
            self.assertEqual(
                self.registry.get_sample_value("socks_bytes_total", labels), value
            )
        self.assertIsNone(
            self.registry.get_sample_value("socks_bytes_total", {"direction": "up"})
        )

    def test_otherMetricsUnlabelled(self) -> None:
        """
        The other metrics have no C{user} label.
        """
        for family in self.registry.collect():
            for sample in family.samples:
                if not sample.name.startswith(
                    ("socks_sessions_total", "socks_sessions_created", "socks_bytes_")
                ):
                    self.assertNotIn("user", sample.labels, sample.name)


class RegistryTests(SynchronousTestCase):
    """
    Each L{ServerMetrics} has a registry of its own, with the process and
    platform collectors in it.
    """

    def test_twoInOneProcess(self) -> None:
        """
        Two L{ServerMetrics} in one process, with their process collectors,
        do not collide, and count apart.
        """
        first = ServerMetrics()
        second = ServerMetrics()
        self.assertIsNot(first.registry, second.registry)
        first.refused("rate")
        labels = {"reason": "rate"}
        self.assertEqual(
            first.registry.get_sample_value("socks_refused_total", labels), 1.0
        )
        self.assertEqual(
            second.registry.get_sample_value("socks_refused_total", labels), 0.0
        )

    def test_notTheDefaultRegistry(self) -> None:
        """
        Nothing is registered in C{prometheus_client}'s global default
        registry.
        """
        metrics = ServerMetrics()
        metrics.sessionEnded("5", "connect", "success", started=False)
        self.assertIsNot(metrics.registry, REGISTRY)
        self.assertNotIn(b"socks_", generate_latest(REGISTRY))

    def test_registryGiven(self) -> None:
        """
        Given a registry, the metrics are registered in it; a second
        L{ServerMetrics} in the same registry collides.
        """
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry=registry, processCollectors=False)
        self.assertIs(metrics.registry, registry)
        metrics.refused("rate")
        self.assertEqual(
            registry.get_sample_value("socks_refused_total", {"reason": "rate"}), 1.0
        )
        self.assertRaises(
            ValueError, ServerMetrics, registry=registry, processCollectors=False
        )

    def test_processCollector(self) -> None:
        """
        The process collector's C{process_cpu_seconds_total} and the
        platform collector's C{python_info} are in the registry.
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("the process collector reads Linux's /proc")
        registry = ServerMetrics().registry
        self.assertIsNotNone(registry.get_sample_value("process_cpu_seconds_total"))
        self.assertIn(b"\npython_info{", generate_latest(registry))

    def test_noProcessCollectors(self) -> None:
        """
        With C{processCollectors=False}, only the server's own metrics are
        in the registry.
        """
        registry = ServerMetrics(processCollectors=False).registry
        names = {family.name for family in registry.collect()}
        self.assertEqual(names, set(_FAMILY.values()))

    def test_importInstallsNoReactor(self) -> None:
        """
        Importing the module, and making metrics, installs no reactor:
        twistd installs the one asked for after importing the plugins.
        """
        script = (
            "import sys\n"
            "from socks_twisted.server._metrics import ServerMetrics\n"
            "ServerMetrics()\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", script],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.assertEqual(output, "False\n")


class _BodyReader(Protocol):
    """
    Collects a response's body.  (Not readBody: on this transport it warns
    that it cannot abort the connection.)
    """

    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class MetricsSiteTests(TestCase):
    """
    L{metricsSite} over real HTTP on the loopback.
    """

    def setUp(self) -> None:
        self.metrics = ServerMetrics()
        self.metrics.sessionEnded("5", "connect", "success", started=False)
        listening: IListeningPort = cast(IReactorTCP, reactor).listenTCP(
            # Site's type parameters are not ServerFactory's, as
            # IReactorTCP declares them.
            0,
            cast(ServerFactory, metricsSite(self.metrics)),
            interface="127.0.0.1",
        )
        self.addCleanup(listening.stopListening)
        self.port = cast(IPv4Address, listening.getHost()).port

    async def get(self, path: bytes) -> tuple[IResponse, bytes]:
        """
        GET C{path} from the site: the response and its body.
        """
        agent = Agent(reactor)
        url = b"http://127.0.0.1:%d%s" % (self.port, path)
        response: IResponse = await agent.request(b"GET", url)
        body = Deferred[bytes]()
        response.deliverBody(_BodyReader(body))
        return response, await body

    async def test_metrics(self) -> None:
        """
        C{GET /metrics} answers 200 with the metrics in Prometheus' text
        format.
        """
        response, body = await self.get(b"/metrics")
        self.assertEqual(response.code, 200)
        contentType = response.headers.getRawHeaders(b"content-type")
        assert contentType is not None
        self.assertEqual(len(contentType), 1)
        self.assertTrue(
            contentType[0].startswith(b"text/plain; version=0.0.4"), contentType
        )
        self.assertIn(b"\nsocks_sessions_total{", body)
        self.assertIn(b"# TYPE socks_sessions_total counter\n", body)

    async def test_index(self) -> None:
        """
        C{GET /} answers 200 with a line of text pointing to C{/metrics}.
        """
        response, body = await self.get(b"/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"/metrics", body)

    async def test_otherPathNotFound(self) -> None:
        """
        Any other path is not found.
        """
        response, _ = await self.get(b"/nothing")
        self.assertEqual(response.code, 404)

    async def test_noAccessLog(self) -> None:
        """
        The site logs no access line for a request: a scraper's, every few
        seconds, would fill the server's log.
        """
        capture = LogCapture(self)
        await self.get(b"/metrics")
        self.assertNotIn("GET /metrics", capture.text())
