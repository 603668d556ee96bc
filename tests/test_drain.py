"""
Tests for the graceful drain on C{SIGTERM}: L{socks_twisted._drain} on a
clock, its wiring in C{makeService}, and real C{twistd -n socks} processes
drained with open sessions.
"""

from __future__ import annotations

import gc
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from socks_twisted import tap
from socks_twisted._drain import (
    POLL_INTERVAL,
    Drainer,
    DrainResult,
    ServerService,
)
from socks_twisted._metricsservice import MetricsService
from socks_twisted._sighup import SIGHUPService
from socks_twisted._startup import ListeningService, StartupError
from tests.test_jsonlog import (
    JSONServer,
    echoes,
    parseLines,
    sessionSummaries,
    socks5Connect,
    startEchoServer,
    startJSONServer,
)


class FakeClient:
    """
    A session's client connection: aborting it ends the session on the
    clock's next turn, as a TCP transport does.
    """

    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.aborted = 0

    def abortConnection(self) -> None:
        self.aborted += 1
        self.session.holder.clock.callLater(0, self.session.end)


class FakeSession:
    """
    A session in a L{FakeFactory}.
    """

    def __init__(self, holder: FakeFactory) -> None:
        self.holder = holder
        self.client = FakeClient(self)
        holder.sessions.add(self)

    def end(self) -> None:
        """
        The session ends (its client connection is lost).
        """
        self.holder.sessions.discard(self)


class FakeFactory:
    """
    What a drain sees of the factory: its open sessions.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sessions: set[FakeSession] = set()


class FakeListener(Service):
    """
    A listening service that records being stopped.
    """

    stopped = 0

    def stopService(self) -> None:
        self.stopped += 1
        Service.stopService(self)


class DrainerTests(SynchronousTestCase):
    """
    L{Drainer} stops listening at once, waits for the sessions, and cuts the
    ones left at its timeout.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = FakeFactory(self.clock)
        self.listeners: list[Service] = [FakeListener(), FakeListener()]

    def drainer(self, timeout: float = 10.0) -> Drainer:
        return Drainer(self.clock, self.factory, self.listeners, timeout)

    def outcome(self, d: Deferred[DrainResult]) -> DrainResult | None:
        results: list[DrainResult] = []

        def keep(result: DrainResult) -> DrainResult:
            results.append(result)
            return result

        d.addCallback(keep)
        return results[0] if results else None

    def test_noSessions(self) -> None:
        """
        With no session open, the drain stops the listeners and finishes at
        once.
        """
        with capturedLogs() as events:
            result = self.outcome(self.drainer().start())
        self.assertEqual(result, DrainResult(drained=0, cut=0, seconds=0.0))
        self.assertEqual(
            [cast(FakeListener, listener).stopped for listener in self.listeners],
            [1, 1],
        )
        self.assertEqual(events[-1]["drained"], 0)
        self.assertEqual(events[-1]["cut"], 0)

    def test_drained(self) -> None:
        """
        Sessions that end by themselves are counted drained; the drain
        finishes soon after the last one ends, well before its timeout,
        and logs the counts.
        """
        first, second = FakeSession(self.factory), FakeSession(self.factory)
        drainer = self.drainer(10)
        with capturedLogs() as events:
            d = drainer.start()
            self.assertEqual(
                [cast(FakeListener, listener).stopped for listener in self.listeners],
                [1, 1],
            )
            self.assertTrue(drainer.draining)
            self.clock.advance(1)
            first.end()
            self.clock.advance(1)
            self.assertIsNone(self.outcome(d))
            second.end()
            self.clock.advance(POLL_INTERVAL)
        result = self.outcome(d)
        assert result is not None
        self.assertEqual((result.drained, result.cut), (2, 0))
        self.assertAlmostEqual(result.seconds, 2 + POLL_INTERVAL, places=6)
        self.assertFalse(drainer.draining)
        self.assertEqual((first.client.aborted, second.client.aborted), (0, 0))
        self.assertEqual((events[-1]["drained"], events[-1]["cut"]), (2, 0), events[-1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cutAtTimeout(self) -> None:
        """
        The sessions still open at the timeout are aborted and counted cut.
        """
        ending, staying = FakeSession(self.factory), FakeSession(self.factory)
        d = self.drainer(2).start()
        self.clock.advance(1)
        ending.end()
        self.clock.advance(0.9)
        self.assertIsNone(self.outcome(d))
        self.assertEqual(staying.client.aborted, 0)
        with capturedLogs() as events:
            self.clock.advance(0.1)
            self.assertEqual(staying.client.aborted, 1)
            self.clock.advance(0)
        result = self.outcome(d)
        assert result is not None
        self.assertEqual((result.drained, result.cut), (1, 1))
        self.assertAlmostEqual(result.seconds, 2.0)
        self.assertEqual(ending.client.aborted, 0)
        self.assertEqual((events[-1]["drained"], events[-1]["cut"]), (1, 1))
        self.assertEqual(self.factory.sessions, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_zeroTimeout(self) -> None:
        """
        A timeout of 0 cuts every session at once.
        """
        sessions = [FakeSession(self.factory) for _ in range(3)]
        d = self.drainer(0).start()
        self.assertEqual([s.client.aborted for s in sessions], [1, 1, 1])
        self.clock.advance(0)
        self.assertEqual(self.outcome(d), DrainResult(drained=0, cut=3, seconds=0.0))

    def test_cutEarly(self) -> None:
        """
        L{Drainer.cut} (a second signal) aborts the sessions left at once;
        calling it again does nothing more.
        """
        ended, left = FakeSession(self.factory), FakeSession(self.factory)
        drainer = self.drainer(30)
        d = drainer.start()
        self.clock.advance(1)
        ended.end()
        self.clock.advance(1)
        self.assertEqual(drainer.remaining(), [left])
        drainer.cut()
        drainer.cut()
        self.assertEqual(left.client.aborted, 1)
        self.clock.advance(0)
        self.assertEqual(self.outcome(d), DrainResult(drained=1, cut=1, seconds=2.0))
        drainer.cut()
        self.assertEqual(left.client.aborted, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cutBeforeStart(self) -> None:
        """
        Cutting a drain that has not started does nothing; starting twice is
        an error.
        """
        session = FakeSession(self.factory)
        drainer = self.drainer()
        drainer.cut()
        self.assertEqual(session.client.aborted, 0)
        drainer.start()
        self.assertRaises(RuntimeError, drainer.start)
        drainer.cut()
        self.clock.advance(0)

    def test_waitsForPorts(self) -> None:
        """
        The drain says it drains once its ports have closed; its timeout
        counts from the signal all the same.
        """
        closing: Deferred[None] = Deferred()

        class SlowListener(Service):
            def stopService(self) -> Deferred[None]:
                return closing

        self.listeners = [SlowListener()]
        session = FakeSession(self.factory)
        with capturedLogs() as events:
            d = self.drainer(1).start()
            self.assertEqual(events, [])
            closing.callback(None)
            self.assertIn("draining", events[0]["log_format"])
            self.assertEqual(events[0]["sessions"], 1)
            self.clock.advance(1)
            self.clock.advance(0)
        self.assertEqual(session.client.aborted, 1)
        self.assertEqual(self.outcome(d), DrainResult(drained=0, cut=1, seconds=1.0))

    def test_newSessionsIgnored(self) -> None:
        """
        Only the sessions open when the drain starts are waited for.
        """
        FakeSession(self.factory).end()
        drainer = self.drainer(5)
        d = drainer.start()
        FakeSession(self.factory)  # cannot happen: the ports are closed
        self.clock.advance(POLL_INTERVAL)
        self.assertEqual(self.outcome(d), DrainResult(drained=0, cut=0, seconds=0.0))


@implementer(IReactorFromThreads)
class FakeReactor(Clock):
    """
    A clock that is also enough of a reactor for L{ServerService}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.running = True
        self.stopped = 0
        self.whenRunning: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def callWhenRunning(self, f: Callable[..., object], *args: object) -> object:
        self.whenRunning.append((f, args))
        return ("trigger", len(self.whenRunning))

    def removeSystemEventTrigger(self, trigger: object) -> None:
        self.whenRunning.clear()

    def run(self) -> None:
        for f, args in self.whenRunning:
            f(*args)
        self.whenRunning.clear()

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        self.callLater(0, callable, *args, **kwargs)

    def stop(self) -> None:
        self.stopped += 1


class ServerServiceTests(SynchronousTestCase):
    """
    L{ServerService} catches C{SIGTERM} once the reactor runs, drains on the
    first, cuts on a second or on C{SIGINT}, and stops the reactor.
    """

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.factory = FakeFactory(cast(Clock, self.reactor))
        self.handlers: dict[int, Any] = {
            signal.SIGTERM: "reactor's SIGTERM",
            signal.SIGINT: "reactor's SIGINT",
        }
        self.service = ServerService(
            cast(IReactorCore, self.reactor),
            self.factory,
            2.0,
            installHandler=self.install,
        )
        self.listener = FakeListener()
        self.other = FakeListener()
        for child in (self.listener, self.other):
            child.setServiceParent(self.service)
        self.service.listeners.append(self.listener)

    def install(self, signum: int, handler: Any) -> Any:
        previous = self.handlers.get(signum)
        self.handlers[signum] = handler
        return previous

    def send(self, signum: int) -> None:
        """
        Deliver C{signum} to its handler, and let the reactor run what the
        handler left to it.
        """
        self.handlers[signum](signum, None)
        self.reactor.advance(0)

    def test_installedWhenRunning(self) -> None:
        """
        The C{SIGTERM} handler replaces the reactor's only once the reactor
        runs; stopping the service puts the reactor's back.
        """
        self.service.startService()
        self.assertEqual(self.handlers[signal.SIGTERM], "reactor's SIGTERM")
        self.reactor.run()
        self.assertEqual(self.handlers[signal.SIGTERM], self.service._received)
        self.assertEqual(self.handlers[signal.SIGINT], "reactor's SIGINT")
        self.service.stopService()
        self.assertEqual(self.handlers[signal.SIGTERM], "reactor's SIGTERM")

    def test_heapNotFrozenByDefault(self) -> None:
        """
        A service made without C{freezeHeap} (an embedding program's, a
        test's) leaves the collector alone.
        """
        frozen: list[None] = []
        self.patch(gc, "freeze", lambda: frozen.append(None))
        self.service.startService()
        self.service.stopService()
        self.assertEqual(frozen, [])

    def test_heapFrozenOnStart(self) -> None:
        """
        With C{freezeHeap}, starting freezes the objects made so far, once.
        """
        frozen: list[None] = []
        self.patch(gc, "freeze", lambda: frozen.append(None))
        service = ServerService(
            cast(IReactorCore, self.reactor),
            self.factory,
            2.0,
            installHandler=self.install,
            freezeHeap=True,
        )
        service.startService()
        self.assertEqual(frozen, [None])
        service.stopService()

    def test_twistdServiceFreezesHeap(self) -> None:
        """
        The service C{twistd socks} runs freezes the heap as it starts.
        """
        options = tap.Options()
        options.parseOptions(["--port", "tcp:0:interface=127.0.0.1"])
        service = tap.makeService(options)
        assert isinstance(service, ServerService)
        self.assertTrue(service.freezeHeap)

    def test_stoppedBeforeRunning(self) -> None:
        """
        A service stopped before the reactor ran installs nothing.
        """
        self.service.startService()
        self.service.stopService()
        self.reactor.run()
        self.assertEqual(self.handlers[signal.SIGTERM], "reactor's SIGTERM")

    def test_drainThenStop(self) -> None:
        """
        C{SIGTERM} stops the SOCKS listeners only, drains, and stops the
        reactor when the sessions have ended.
        """
        session = FakeSession(self.factory)
        self.service.startService()
        self.reactor.run()
        with capturedLogs() as events:
            self.send(signal.SIGTERM)
            self.assertEqual((self.listener.stopped, self.other.stopped), (1, 0))
            self.assertEqual(self.handlers[signal.SIGINT], self.service._received)
            self.reactor.advance(1)
            session.end()
            self.reactor.advance(POLL_INTERVAL)
        self.assertEqual(self.reactor.stopped, 1)
        self.assertEqual(session.client.aborted, 0)
        self.assertEqual((events[-1]["drained"], events[-1]["cut"]), (1, 0))
        self.service.stopService()
        self.assertEqual(self.handlers[signal.SIGINT], "reactor's SIGINT")
        self.assertEqual(self.handlers[signal.SIGTERM], "reactor's SIGTERM")

    def test_timeout(self) -> None:
        """
        Sessions still open after C{drainTimeout} are cut, then the reactor
        stops.
        """
        session = FakeSession(self.factory)
        self.service.startService()
        self.reactor.run()
        self.send(signal.SIGTERM)
        self.reactor.advance(1.9)
        self.assertEqual(self.reactor.stopped, 0)
        self.reactor.advance(0.1)
        self.reactor.advance(0)
        self.assertEqual(session.client.aborted, 1)
        self.assertEqual(self.reactor.stopped, 1)

    def test_secondSignal(self) -> None:
        """
        A second C{SIGTERM}, or a C{SIGINT}, while draining cuts at once.
        """
        for second in (signal.SIGTERM, signal.SIGINT):
            self.setUp()
            session = FakeSession(self.factory)
            self.service.startService()
            self.reactor.run()
            self.send(signal.SIGTERM)
            self.reactor.advance(0.5)
            with capturedLogs() as events:
                self.send(second)
                self.reactor.advance(0)
            self.assertEqual(session.client.aborted, 1)
            self.assertEqual(self.reactor.stopped, 1)
            self.assertIn("cutting", events[0]["log_format"])
            self.assertEqual(events[0]["sessions"], 1)
            self.assertEqual((events[-1]["drained"], events[-1]["cut"]), (0, 1))
            self.service.stopService()
            self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stoppedWhileDraining(self) -> None:
        """
        Stopping the service (the reactor stopping otherwise) cuts a drain
        still running.
        """
        session = FakeSession(self.factory)
        self.service.startService()
        self.reactor.run()
        self.send(signal.SIGTERM)
        self.service.stopService()
        self.reactor.advance(0)
        self.assertEqual(session.client.aborted, 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_onParent(self) -> None:
        """
        The C{onParent} hooks see the parent before the service joins it.
        """
        seen: list[object] = []
        collection = MultiService()
        self.service.onParent.append(seen.append)
        self.service.setServiceParent(collection)
        self.assertEqual(seen, [collection])
        self.assertIs(self.service.parent, collection)


class MakeServiceTests(TestCase):
    """
    C{makeService} drains the SOCKS ports only, and serves C{--metrics}.
    """

    def setUp(self) -> None:
        self.patch(tap, "getrlimit", lambda which: (200, 200))
        self.patch(tap, "setrlimit", lambda which, limits: None)

    def service(self, *argv: str) -> ServerService:
        options = tap.Options()
        options.parseOptions(list(argv))
        service = tap.makeService(options)
        assert isinstance(service, ServerService)
        return service

    def test_defaults(self) -> None:
        """
        The drain gives sessions 10 seconds by default, and stops the
        listening services only; without C{--metrics} no metrics service.
        """
        service = self.service("--port", "tcp:0:interface=127.0.0.1")
        children = list(service)
        self.assertEqual(service.drainTimeout, 10.0)
        self.assertIsInstance(children[0], SIGHUPService)
        self.assertEqual(service.listeners, children[1:])
        self.assertEqual(len(children), 2)
        self.assertIsInstance(children[1], ListeningService)
        self.assertIs(service.factory, cast(ListeningService, children[1]).factory)

    def test_drainTimeout(self) -> None:
        """
        C{--drain-timeout} is 0 or positive seconds.
        """
        self.assertEqual(self.service("--drain-timeout", "2.5").drainTimeout, 2.5)
        self.assertEqual(self.service("--drain-timeout", "0").drainTimeout, 0.0)
        error = self.assertRaises(
            usage.UsageError, tap.Options().parseOptions, ["--drain-timeout", "-1"]
        )
        self.assertIn("--drain-timeout", str(error))

    def test_configFile(self) -> None:
        """
        The configuration file's C{[server]} table can set both.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '[server]\ndrain-timeout = 3\nmetrics = "tcp:0:interface=127.0.0.1"\n'
            )
        service = self.service("--config", path)
        self.assertEqual(service.drainTimeout, 3.0)
        self.assertIsInstance(list(service)[-1], MetricsService)

    async def test_metrics(self) -> None:
        """
        C{--metrics} adds a service, not drained, that serves
        C{GET /metrics}.
        """
        service = self.service("--metrics", "tcp:0:interface=127.0.0.1")
        children = list(service)
        metrics = children[-1]
        self.assertIsInstance(metrics, MetricsService)
        self.assertNotIn(metrics, service.listeners)
        self.assertEqual(len(service.listeners), 1)
        ports: list[Any] = []
        metricsService = cast(MetricsService, metrics)
        metricsService.listening = ports.append
        metricsService.privilegedStartService()
        try:
            port = ports[0].getHost().port

            def scrape() -> bytes:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=10) as response:
                    return cast(bytes, response.read())

            body = await deferToThread(scrape)
        finally:
            await cast(Deferred[None], metricsService.stopService())
        self.assertIn(b"socks_sessions_active", body)

    def test_metricsErrors(self) -> None:
        """
        A bad C{--metrics} description, or one that cannot listen, is named
        as C{--metrics}; a public one is only warned about.
        """
        error = self.assertRaises(
            usage.UsageError, tap.Options().parseOptions, ["--metrics", "bogus:1"]
        )
        self.assertIn("--metrics 'bogus:1'", str(error))
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = self.service("--metrics", f"tcp:{port}:interface=127.0.0.1")
        metrics = cast(IService, list(service)[-1])
        error2 = self.assertRaises(StartupError, metrics.privilegedStartService)
        self.assertTrue(str(error2).startswith("--metrics tcp:"), str(error2))
        with capturedLogs() as events:
            self.service("--metrics", "tcp:0:interface=0.0.0.0")
        self.assertTrue(
            any("no authentication" in e["log_format"] for e in events), events
        )


def drainEvents(server: JSONServer) -> list[dict[str, Any]]:
    """
    @return: The events that end a drain.
    """
    return [
        e
        for e in server.events()
        if e.get("log_namespace") == "socks_twisted._drain" and "cut" in e
    ]


def refused(port: int) -> bool:
    """
    @return: Whether a connection to C{127.0.0.1:port} is refused.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def waitDraining(server: JSONServer, within: float) -> float:
    """
    Wait until the server logs that it drains (a connection attempted before
    that could still be accepted, and would count as a session).

    @return: How long after the first signal it logged that.

    @raise AssertionError: If it does not within C{within} seconds.
    """
    while not any(
        str(e.get("log_text", "")).startswith("draining:") for e in server.events()
    ):
        if time.monotonic() - server.signalledAt[0] > within:
            raise AssertionError(f"no drain after {within} s:\n{server.output()}")
        time.sleep(0.01)
    return time.monotonic() - server.signalledAt[0]


class TwistdDrainTests(SynchronousTestCase):
    """
    A real C{twistd -n socks} drains on C{SIGTERM} and exits with status 0.
    """

    def test_drainsAndExits(self) -> None:
        """
        After C{SIGTERM}, new connections are refused at once, the open
        session keeps relaying, the metrics endpoint answers, and when the
        client closes the server exits 0 long before the timeout, logging
        one session drained.
        """
        echoPort = startEchoServer(self)
        server = startJSONServer(
            self, "--drain-timeout", "30", "--metrics", "tcp:0:interface=127.0.0.1"
        )
        client = socks5Connect(server.port, echoPort)
        self.addCleanup(client.close)
        self.assertTrue(echoes(client, b"before"))
        server.signal(signal.SIGTERM)
        self.assertLess(waitDraining(server, 2.0), 1.0)
        self.assertTrue(refused(server.port))
        self.assertTrue(echoes(client, b"during the drain"))
        url = f"http://127.0.0.1:{server.metricsPort}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            self.assertEqual(response.status, 200)
            body = response.read()
        self.assertIn(b"socks_sessions_active", body)
        self.assertIsNone(server.process.poll())
        client.close()
        status = server.wait(20)
        elapsed = time.monotonic() - server.signalledAt[0]
        self.assertEqual(status, 0, server.output())
        self.assertLess(elapsed, 10, server.output())
        [done] = drainEvents(server)
        self.assertEqual((done["drained"], done["cut"]), (1, 0))
        self.assertEqual(len(sessionSummaries(parseLines(server.output()))), 1)

    def test_timeoutCuts(self) -> None:
        """
        A session still open after C{--drain-timeout} is cut; the server
        then exits 0, about the timeout after C{SIGTERM}.
        """
        echoPort = startEchoServer(self)
        server = startJSONServer(self, "--drain-timeout", "2")
        client = socks5Connect(server.port, echoPort)
        self.addCleanup(client.close)
        self.assertTrue(echoes(client, b"x"))
        server.signal(signal.SIGTERM)
        status = server.wait(20)
        elapsed = time.monotonic() - server.signalledAt[0]
        self.assertEqual(status, 0, server.output())
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 2 + 3)
        [done] = drainEvents(server)
        self.assertEqual((done["drained"], done["cut"]), (0, 1))
        client.settimeout(5)
        try:
            self.assertEqual(client.recv(10), b"")
        except ConnectionResetError:
            pass

    def test_secondSignalCuts(self) -> None:
        """
        A second C{SIGTERM}, or a C{SIGINT}, during the drain cuts the
        session and the server exits 0 at once.
        """
        echoPort = startEchoServer(self)
        for second in (signal.SIGTERM, signal.SIGINT):
            server = startJSONServer(self, "--drain-timeout", "30")
            client = socks5Connect(server.port, echoPort)
            self.addCleanup(client.close)
            self.assertTrue(echoes(client, b"x"))
            server.signal(signal.SIGTERM)
            waitDraining(server, 2.0)
            self.assertTrue(refused(server.port))
            self.assertTrue(echoes(client, b"y"))
            server.signal(second)
            status = server.wait(20)
            elapsed = time.monotonic() - server.signalledAt[1]
            self.assertEqual(status, 0, server.output())
            self.assertLess(elapsed, 2.0)
            [done] = drainEvents(server)
            self.assertEqual((done["drained"], done["cut"]), (0, 1))
