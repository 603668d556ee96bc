"""
The server's Prometheus metrics, through C{prometheus_client}.

Every L{ServerMetrics} keeps its metrics in a registry of its own rather than
in C{prometheus_client}'s global default registry: two servers in one
process, and the tests, would otherwise collide on the metric names (the
default registry refuses a second C{socks_sessions_total}).  The process and
platform collectors (CPU, memory, descriptors; the Python version) are
registered into that same registry, so one scrape of C{/metrics} gives them
all.

The metric names and labels are a contract, dashboards depend on them::

    socks_sessions_total        counter    version, command, outcome [, user]
    socks_sessions_active       gauge      command
    socks_bytes_total           counter    direction (up, down) [, user]
    socks_handshake_seconds     histogram  (accept -> request read)
    socks_connect_seconds       histogram  (request -> target connected)
    socks_auth_failures_total   counter    method
    socks_refused_total         counter    reason
    socks_policy_denials_total  counter    rule
    socks_udp_datagrams_total   counter    direction (up, down)
    socks_udp_dropped_total     counter    reason

C{up} is client to target, C{down} target to client.  A label value not
known (a session that ended before its request was read has no version or
command) is C{"-"}.

The histograms' buckets, in seconds:

  - L{HANDSHAKE_BUCKETS}: from 1 ms (a client on the same host, no
    authentication) through the tens of milliseconds of a round trip or a
    password check to the default handshake timeout (30 s) and beyond
    (60 s, for a raised timeout).
  - L{CONNECT_BUCKETS}: from 1 ms (a target on the local network) through
    the 10 ms to 1 s of the Internet's round trips and name resolution to
    the default connect timeout (30 s) and beyond (60 s).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

__all__ = [
    "CONNECT_BUCKETS",
    "HANDSHAKE_BUCKETS",
    "UNKNOWN",
    "ServerMetrics",
    "metricsSite",
]

#: The label value of a version, command or user not known.
UNKNOWN = "-"

#: Upper bounds, in seconds, of C{socks_handshake_seconds}'s buckets (the
#: last, C{+Inf}, is added by C{prometheus_client}).
HANDSHAKE_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

#: Upper bounds, in seconds, of C{socks_connect_seconds}'s buckets.
CONNECT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# Label values every server has, made at start so that their series exist
# (at 0) from the first scrape: rate() and increase() of a series that
# appears only with its first event miss that event.  Only small fixed sets;
# sessions_total's combinations are left to appear as they happen.
_COMMANDS = ("connect", "bind", "udp", "resolve", "resolve_ptr")
_DIRECTIONS = ("up", "down")
_REFUSAL_REASONS = (
    "max_sessions",
    "descriptors",
    "rate",
    "per_client",
    "per_user",
    "back_off",
    "no_rule",
)


class ServerMetrics:
    """
    A server's metrics, in a registry of their own.

    The methods are called by the sessions and the factory, once or a few
    times a connection: each looks its labelled child up in a dictionary
    (C{.labels()} parses and checks its arguments on every call) and moves
    it.

    @ivar registry: The registry holding the metrics (and, unless disabled,
        the process and platform collectors); scrape it with
        L{resource} or L{metricsSite}.
    @ivar userLabel: Whether C{socks_sessions_total} and C{socks_bytes_total}
        carry a C{user} label.
    """

    registry: CollectorRegistry
    userLabel: bool

    def __init__(
        self,
        *,
        userLabel: bool = False,
        registry: CollectorRegistry | None = None,
        processCollectors: bool = True,
    ) -> None:
        """
        @param userLabel: Add a C{user} label to C{socks_sessions_total} and
            C{socks_bytes_total}.  Off by default: a series per user (and
            per version, command and outcome) can be many series.
        @param registry: The registry to register into; by default a new
            one.  (Two L{ServerMetrics} sharing one registry collide.)
        @param processCollectors: Register C{prometheus_client}'s process
            and platform collectors too.
        """
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        #: Whether something serves these metrics: then the bytes of open
        #: sessions are counted every second, not only as they end.
        self.exported = False
        self.userLabel = userLabel
        userLabels: tuple[str, ...] = ("user",) if userLabel else ()

        self._sessions = Counter(
            "socks_sessions",
            "SOCKS sessions ended, by version, command and outcome.",
            ("version", "command", "outcome", *userLabels),
            registry=registry,
        )
        self._active = Gauge(
            "socks_sessions_active",
            "SOCKS sessions whose request has been read and which have not"
            " ended, by command.",
            ("command",),
            registry=registry,
            # Across worker processes (--workers), the sum of the live ones.
            multiprocess_mode="livesum",
        )
        self._bytes = Counter(
            "socks_bytes",
            "Bytes relayed: up is client to target, down target to client.",
            ("direction", *userLabels),
            registry=registry,
        )
        self._handshake = Histogram(
            "socks_handshake_seconds",
            "Seconds from accepting a connection to reading its request.",
            registry=registry,
            buckets=HANDSHAKE_BUCKETS,
        )
        self._connect = Histogram(
            "socks_connect_seconds",
            "Seconds from reading a request to its target connected.",
            registry=registry,
            buckets=CONNECT_BUCKETS,
        )
        self._authFailures = Counter(
            "socks_auth_failures",
            "Failed authentications, by method.",
            ("method",),
            registry=registry,
        )
        self._refusals = Counter(
            "socks_refused",
            "Connections or requests refused by a limit, by reason.",
            ("reason",),
            registry=registry,
        )
        self._denials = Counter(
            "socks_policy_denials",
            "Requests denied by the access rules, by the deciding rule.",
            ("rule",),
            registry=registry,
        )
        self._udpDatagrams = Counter(
            "socks_udp_datagrams",
            "UDP datagrams relayed: up is client to target, down target to client.",
            ("direction",),
            registry=registry,
        )
        self._udpDrops = Counter(
            "socks_udp_dropped",
            "UDP datagrams dropped, by reason.",
            ("reason",),
            registry=registry,
        )

        # The label children, by label values, made on first use.  Their
        # number is bounded by the metrics' own series (prometheus_client
        # keeps every child it has made): these dictionaries add no
        # cardinality.
        self._sessionChildren: dict[tuple[str, ...], Counter] = {}
        self._activeChildren: dict[str, Gauge] = {}
        self._byteChildren: dict[str | None, tuple[Counter, Counter]] = {}
        self._authChildren: dict[str, Counter] = {}
        self._refusalChildren: dict[str, Counter] = {}
        self._denialChildren: dict[str, Counter] = {}
        self._udpChildren: dict[str, Counter] = {}
        self._dropChildren: dict[str, Counter] = {}

        for command in _COMMANDS:
            self._activeChild(command)
        if not userLabel:
            self._byteCounters(None)
        for direction in _DIRECTIONS:
            self._udpChild(direction)
        for reason in _REFUSAL_REASONS:
            self._refusalChild(reason)

        if processCollectors:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)

    # Children, looked up or made.

    def _activeChild(self, command: str) -> Gauge:
        child = self._activeChildren.get(command)
        if child is None:
            child = self._activeChildren[command] = self._active.labels(command)
        return child

    def _byteCounters(self, user: str | None) -> tuple[Counter, Counter]:
        if not self.userLabel:
            # One pair for everyone: the users must not grow the dictionary.
            user = None
        counters = self._byteChildren.get(user)
        if counters is None:
            if self.userLabel:
                name = UNKNOWN if user is None else user
                counters = (
                    self._bytes.labels("up", name),
                    self._bytes.labels("down", name),
                )
            else:
                counters = (self._bytes.labels("up"), self._bytes.labels("down"))
            self._byteChildren[user] = counters
        return counters

    def _udpChild(self, direction: str) -> Counter:
        child = self._udpChildren.get(direction)
        if child is None:
            child = self._udpChildren[direction] = self._udpDatagrams.labels(direction)
        return child

    def _refusalChild(self, reason: str) -> Counter:
        child = self._refusalChildren.get(reason)
        if child is None:
            child = self._refusalChildren[reason] = self._refusals.labels(reason)
        return child

    # The API.

    def sessionStarted(self, command: str) -> None:
        """
        A session's request has been read: one more active session.

        @param command: C{"connect"}, C{"bind"}, C{"udp"}, C{"resolve"} or
            C{"resolve_ptr"}.
        """
        self._activeChild(command).inc()

    def sessionEnded(
        self,
        version: str,
        command: str,
        outcome: str,
        user: str | None = None,
        started: bool = True,
    ) -> None:
        """
        A session has ended: count it, and if L{sessionStarted} counted it
        as active, one fewer active session.

        @param version: C{"4"}, C{"4a"}, C{"5"}, or C{"-"} if not known.
        @param command: C{"connect"}, C{"bind"}, C{"udp"}, C{"resolve"},
            C{"resolve_ptr"}, or C{"-"}.
        @param outcome: C{"success"}, C{"refused"}, C{"unreachable"},
            C{"timeout"}, C{"denied"}, C{"auth_failed"},
            C{"protocol_error"}, C{"client_left"}, C{"limit"} or
            C{"error"}.
        @param user: The authenticated user, if any; only used with
            C{userLabel}, as C{"-"} when C{None}.  (Pass only a name that
            has authenticated: a name a client merely offered is the
            client's choice, and unbounded.)
        @param started: Whether L{sessionStarted} was called for this
            session (with the same C{command}).
        """
        if self.userLabel:
            key: tuple[str, ...] = (
                version,
                command,
                outcome,
                UNKNOWN if user is None else user,
            )
        else:
            key = (version, command, outcome)
        child = self._sessionChildren.get(key)
        if child is None:
            child = self._sessionChildren[key] = self._sessions.labels(*key)
        child.inc()
        if started:
            self._activeChild(command).dec()

    def transferred(self, up: int, down: int, user: str | None = None) -> None:
        """
        Bytes have been relayed since the last call for this session.

        @param up: Bytes from the client to the target.
        @param down: Bytes from the target to the client.
        @param user: The authenticated user, if any (see L{sessionEnded}).
        """
        upCounter, downCounter = self._byteCounters(user)
        # An idle session reports every second too: skipping its zeros
        # spares taking the counters' locks.
        if up:
            upCounter.inc(up)
        if down:
            downCounter.inc(down)

    def handshakeTook(self, seconds: float) -> None:
        """
        A session's handshake, from accept to its request read, took
        C{seconds}.
        """
        self._handshake.observe(seconds)

    def connectTook(self, seconds: float) -> None:
        """
        Reaching a session's target, from its request read to connected,
        took C{seconds}.
        """
        self._connect.observe(seconds)

    def authFailed(self, method: str) -> None:
        """
        An authentication failed.

        @param method: The method, as C{"username/password"}.
        """
        child = self._authChildren.get(method)
        if child is None:
            child = self._authChildren[method] = self._authFailures.labels(method)
        child.inc()

    def refused(self, reason: str) -> None:
        """
        A limit refused a connection or request.

        @param reason: C{"max_sessions"}, C{"descriptors"}, C{"rate"},
            C{"per_client"}, C{"per_user"}, C{"back_off"} or C{"no_rule"}.
        """
        self._refusalChild(reason).inc()

    def denied(self, rule: str) -> None:
        """
        The access rules denied a request.

        @param rule: The deciding rule's C{describe()} text, as
            C{'rule 3 ("staff web")'}: rules are few, so are its values.
        """
        child = self._denialChildren.get(rule)
        if child is None:
            child = self._denialChildren[rule] = self._denials.labels(rule)
        child.inc()

    def udpDatagrams(self, direction: str, count: int = 1) -> None:
        """
        UDP datagrams have been relayed.

        @param direction: C{"up"} (client to target) or C{"down"}.
        @param count: How many.
        """
        self._udpChild(direction).inc(count)

    def udpDropped(self, reason: str, count: int = 1) -> None:
        """
        UDP datagrams have been dropped.

        @param reason: Why, a short fixed word.
        @param count: How many.
        """
        child = self._dropChildren.get(reason)
        if child is None:
            child = self._dropChildren[reason] = self._udpDrops.labels(reason)
        child.inc(count)

    def resource(self) -> IResource:
        """
        A web resource serving the metrics in Prometheus' text format (or
        OpenMetrics, as a scraper's C{Accept} asks).

        It renders in the reactor's thread pool (C{prometheus_client}'s
        resource is a WSGI application): a scrape does not hold the reactor
        up, and the metrics are thread-safe.
        """
        return _resourceFor(self.registry)


def _resourceFor(registry: CollectorRegistry) -> IResource:
    """
    Serve C{registry} as L{ServerMetrics.resource} does.
    """
    # Imported here, not at the top: prometheus_client.twisted imports
    # twisted.internet.reactor, which installs the default reactor, and
    # importing this module must not (twistd installs the one asked for
    # after importing the plugins).
    from prometheus_client.twisted import MetricsResource

    # MetricsResource is an unannotated lambda: mypy's untyped_calls_exclude
    # for prometheus_client applies.
    resource: IResource = MetricsResource(registry=registry)
    return resource


class _Root(Resource):
    """
    The metrics site's root: C{/metrics} is its child, C{/} a line saying
    so, anything else not found.
    """

    def __init__(self) -> None:
        # Resource's own is unannotated: called through the class, mypy's
        # untyped_calls_exclude for twisted applies.
        Resource.__init__(self)

    def getChild(self, path: bytes, request: http.Request) -> IResource:
        """
        C{/} (an empty segment) is this resource; anything else is not
        found.  (Not Resource's own: the page it gives is deprecated, and
        warns.)
        """
        if path == b"":
            return self
        return notFound()

    def render_GET(self, request: http.Request) -> bytes:
        """
        Say where the metrics are, in plain text.
        """
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"SOCKS server metrics: /metrics\n"


class _QuietSite(Site):
    """
    A site that writes no access log: a scraper's request every few seconds
    would fill the server's log with lines telling nothing.
    """

    def __init__(self, resource: IResource) -> None:
        # Site's own is unannotated: called through the class (see _Root).
        Site.__init__(self, resource)

    def log(self, request: http.Request) -> None:
        """
        Log nothing.
        """


def workersMetricsSite(directory: str) -> Site:
    """
    A web site serving, at C{/metrics}, the sum of the metrics that worker
    processes keep in C{prometheus_client}'s multiprocess files in
    C{directory} (see L{socks_twisted._workers}).
    """
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    root = _Root()
    root.putChild(b"metrics", _resourceFor(registry))
    return _QuietSite(root)


def metricsSite(metrics: ServerMetrics) -> Site:
    """
    A web site serving C{metrics} at C{/metrics} (and a line at C{/}), to
    listen with on the metrics port.

    @param metrics: The metrics to serve.
    """
    root = _Root()
    root.putChild(b"metrics", metrics.resource())
    metrics.exported = True
    return _QuietSite(root)


class SessionCounts:
    """
    What one session has already counted in the metrics, so that its running
    totals can be added as they grow (every second while the metrics are
    served, and at its end) and never twice.
    """

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._bytes = (0, 0)
        self._datagrams = (0, 0)
        self._drops: dict[str, int] = {}

    def bytes(self, up: int, down: int, user: str | None) -> None:
        """
        The session has relayed C{up} and C{down} bytes in all.
        """
        countedUp, countedDown = self._bytes
        if up != countedUp or down != countedDown:
            self._metrics.transferred(up - countedUp, down - countedDown, user)
            self._bytes = (up, down)

    def datagrams(self, up: int, down: int, drops: Mapping[str, int]) -> None:
        """
        The session's UDP association has relayed C{up} and C{down}
        datagrams and dropped C{drops}, by reason, in all.
        """
        countedUp, countedDown = self._datagrams
        if up != countedUp:
            self._metrics.udpDatagrams("up", up - countedUp)
        if down != countedDown:
            self._metrics.udpDatagrams("down", down - countedDown)
        self._datagrams = (up, down)
        for why, count in drops.items():
            counted = self._drops.get(why, 0)
            if count != counted:
                self._metrics.udpDropped(why, count - counted)
                self._drops[why] = count
