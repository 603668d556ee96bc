"""
One worker process per core: with C{--workers N}, the process twistd
starts becomes a supervisor that opens every listening socket once, then
starts N worker processes that each adopt those sockets into a reactor of
their own, so the kernel spreads the connections across them.

The supervisor holds no session.  It restarts a worker that dies (waiting
longer each time one keeps dying), forwards C{SIGHUP} (reload) to every
worker, and on C{SIGTERM} tells every worker to drain and exits once they
all have.  Workers log to a pipe as JSON events, which the supervisor logs
as its own, each tagged with the worker's number; with C{--metrics}, the
workers keep their metrics in C{prometheus_client}'s multiprocess files and
the supervisor serves their sum.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IProcessTransport,
    IProtocolFactory,
    IReactorCore,
    IReactorFromThreads,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from ._jsonlog import installJSONLogging
from ._listen import Listener, parseDescription
from ._metricsservice import MetricsService
from ._sighup import SIGHUPService
from ._startup import StartupError
from ._textlog import PREFORMATTED, installTextLogging
from .server._metrics import workersMetricsSite

_log = Logger()

#: The program a worker runs, with this interpreter.
WORKER_MAIN = "from socks_twisted._worker import main; main()"

#: The environment variable that puts C{prometheus_client} in multiprocess
#: mode (read when it is imported).
METRICS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds before restarting a worker that died, doubled for each death in
#: a row, up to L{LONGEST_BACKOFF}.
FIRST_BACKOFF = 1.0
LONGEST_BACKOFF = 30.0

#: A worker that ran this long before dying was not dying in a loop: the
#: next restart waits only L{FIRST_BACKOFF} again.
STABLE_AFTER = 60.0

#: Seconds a worker has, beyond the drain timeout, to exit after SIGTERM
#: before it is killed.
EXIT_MARGIN = 5.0


def workerCount(value: str) -> int:
    """
    C{--workers}: a positive number, or C{auto} for one per usable core.

    @raise ValueError: For anything else.
    """
    if value == "auto":
        return usableCores()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError("--workers must be a positive number or 'auto'")
    return count


def sharable(description: str) -> bool:
    """
    Whether workers can share a C{--port} description's socket: they adopt
    the bare listening socket, so it must need nothing else (TLS does).
    """
    args, _ = parseDescription(description)
    kind = args[0].lower()
    if kind == "haproxy":
        return sharable(description.partition(":")[2])
    return kind in ("tcp", "tcp6", "unix", "systemd")


def supervisedService(
    reactor: Any, options: Mapping[str, Any], argv: Sequence[str]
) -> IService:
    """
    With C{--workers N}: the supervisor, a C{SIGHUP} handler that passes the
    signal on to the workers, and, with C{--metrics}, the sum of theirs.

    @param options: The parsed options of C{twistd socks}.
    @param argv: The command line they were parsed from, for the workers.
    """
    metricsListener: Listener | None = options.get("metricsListener")
    directory = metricsDirectory() if metricsListener is not None else None
    supervisor = Supervisor(
        reactor,
        argv,
        options["listeners"],
        options["workers"],
        options["max-sessions"],
        options.get("drain-timeout", 10.0),
        directory,
    )
    service = _SupervisedServer(supervisor, options)
    children: list[Service] = [
        supervisor,
        SIGHUPService(IReactorFromThreads(reactor), supervisor.hangup),
    ]
    if metricsListener is not None and directory is not None:
        children.append(
            MetricsService(
                metricsListener.description,
                metricsListener.endpoint,
                cast(IProtocolFactory, workersMetricsSite(directory)),
                lambda port: None,
            )
        )
    for child in children:
        # Service.setServiceParent is unannotated: called through the class,
        # mypy's untyped_calls_exclude for twisted applies.
        Service.setServiceParent(child, service)
    return service


class _SupervisedServer(MultiService):
    """
    The supervisor and its helpers, which make twistd log as a single
    server does (L{installTextLogging}, or JSON with C{--log-format json})
    when they join twistd's application.
    """

    def __init__(self, supervisor: Supervisor, options: Mapping[str, Any]) -> None:
        MultiService.__init__(self)
        self._supervisor = supervisor
        self._options = options

    def setServiceParent(self, parent: Any) -> None:
        twistdOptions = getattr(self._options, "parent", None)
        if self._options.get("log-format", "text") == "json":
            installJSONLogging(parent, twistdOptions)
        else:
            observer = installTextLogging(parent, twistdOptions)
            self._supervisor.textLog = observer is not None
        Service.setServiceParent(self, parent)


def usableCores() -> int:
    """
    How many cores this process may run on (C{--workers auto}).
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def shareOf(total: int, workers: int) -> int:
    """
    Each worker's share of a server-wide cap: the cap divided by the
    workers, rounded up, so that one worker never has less than one.
    """
    return max(1, math.ceil(total / workers))


@dataclass(frozen=True)
class SharedSocket:
    """
    A listening socket the supervisor opened, as a worker adopts it.

    @ivar fd: Its descriptor, the same number in the worker.
    @ivar family: Its address family.
    @ivar description: The C{--port} description it came from.
    @ivar loopbackOnly: As L{Listener.loopbackOnly}.
    @ivar behindProxy: As L{Listener.behindProxy}.
    """

    fd: int
    family: int
    description: str
    loopbackOnly: bool
    behindProxy: bool


@dataclass(frozen=True)
class WorkerSpec:
    """
    What a worker is told on its command line.

    @ivar argv: The C{twistd socks} options the supervisor was given.
    @ivar sockets: The listening sockets to adopt.
    @ivar index: Its number, from 1.
    @ivar maxSessions: Its share of C{--max-sessions}.
    @ivar supervisor: The supervisor's pid.
    @ivar textLog: Whether to log finished text-log lines rather than JSON
        events.
    """

    argv: list[str]
    sockets: list[SharedSocket]
    index: int
    maxSessions: int
    supervisor: int
    textLog: bool

    def encode(self) -> str:
        """
        As one command-line argument.
        """
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, text: str) -> WorkerSpec:
        """
        Read what L{encode} wrote.
        """
        raw = json.loads(text)
        return cls(
            argv=list(raw["argv"]),
            sockets=[SharedSocket(**socket) for socket in raw["sockets"]],
            index=int(raw["index"]),
            maxSessions=int(raw["maxSessions"]),
            supervisor=int(raw["supervisor"]),
            textLog=bool(raw["textLog"]),
        )


class _NoConnections(Factory):
    """
    The factory the supervisor listens with: its ports never accept (they
    stop reading at once), so it never builds anything.
    """

    noisy = False

    def buildProtocol(self, addr: object) -> Protocol | None:
        return None


class WorkerProtocol(ProcessProtocol):
    """
    The supervisor's end of one worker: logs what the worker logs, and
    reports its end.
    """

    def __init__(
        self,
        index: int,
        ended: Callable[[WorkerProtocol, Failure], None],
        textLog: bool = False,
    ) -> None:
        self.index = index
        self.textLog = textLog
        self.started = 0.0
        self._ended = ended
        self._partial = b""
        self.pid: int | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = transport.pid

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self._relog(line)

    def errReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                _log.error("worker {worker}: {line}", worker=self.index, line=line)

    def _relog(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if self.textLog:
            # A finished line: written as it is (an event of its own, for
            # the observers that would rather have one).
            globalLogPublisher(
                {
                    "log_namespace": __name__,
                    "log_level": LogLevel.info,
                    "log_system": f"worker {self.index}",
                    "log_time": time.time(),
                    "log_format": "{line}",
                    "line": text,
                    "worker": self.index,
                    PREFORMATTED: text + "\n",
                }
            )
            return
        try:
            event = eventFromJSON(text)
        except ValueError:
            _log.info("worker {worker}: {line!r}", worker=self.index, line=line)
            return
        event["worker"] = self.index
        event["log_system"] = f"worker {self.index}"
        globalLogPublisher(event)

    def processEnded(self, reason: Failure) -> None:
        self._ended(self, reason)


class Supervisor(Service):
    """
    Opens the listening sockets and keeps C{workers} worker processes
    serving them.

    @param reactor: Spawns and times the workers.
    @param argv: The C{twistd socks} options, for the workers to parse.
    @param listeners: Where to listen.
    @param workers: How many workers to keep.
    @param maxSessions: The server-wide C{--max-sessions}, shared out.
    @param drainTimeout: The workers' C{--drain-timeout}.
    @param metricsDirectory: Where workers keep their metrics files, when
        the supervisor serves C{--metrics}.
    """

    def __init__(
        self,
        reactor: Any,
        argv: Sequence[str],
        listeners: Sequence[Listener],
        workers: int,
        maxSessions: int,
        drainTimeout: float,
        metricsDirectory: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.argv = list(argv)
        self.listeners = list(listeners)
        self.workers = workers
        self.maxSessions = maxSessions
        self.drainTimeout = drainTimeout
        self.metricsDirectory = metricsDirectory
        self.ports: list[IListeningPort] = []
        self.sockets: list[SharedSocket] = []
        self._running: dict[int, WorkerProtocol] = {}
        self._backoff: dict[int, float] = {}
        self._restarts: dict[int, Any] = {}
        self._stopping = False
        self._allEnded: defer.Deferred[None] | None = None
        self._listening = False
        #: Whether this process writes twistd's text log itself (see
        #: L{installTextLogging}): then workers send it finished lines.
        self.textLog = False

    def privilegedStartService(self) -> None:
        """
        Open every listening socket, while the process may still have the
        privileges a low port needs.
        """
        Service.privilegedStartService(self)
        self._listen()

    def _listen(self) -> None:
        if self._listening:
            return
        self._listening = True
        for listener in self.listeners:
            pending = listener.endpoint.listen(_NoConnections())
            ports: list[IListeningPort] = []
            pending.addCallback(ports.append)
            failures: list[Failure] = []
            pending.addErrback(failures.append)
            if failures:
                raise StartupError(
                    f"--port {listener.description}: {failures[0].getErrorMessage()}"
                )
            if not ports:
                raise StartupError(
                    f"--port {listener.description}: did not listen at once, "
                    "which --workers needs"
                )
            [port] = ports
            raw: Any = port
            raw.stopReading()  # the supervisor never accepts
            self.ports.append(port)
            self.sockets.append(
                SharedSocket(
                    fd=raw.fileno(),
                    family=raw.socket.family,
                    description=listener.description,
                    loopbackOnly=listener.loopbackOnly,
                    behindProxy=listener.behindProxy,
                )
            )
            _log.info(
                "{description} listening on {address} for {workers} workers",
                description=listener.description,
                address=port.getHost(),
                workers=self.workers,
            )

    def startService(self) -> None:
        """
        Start every worker; catch C{SIGTERM} once the reactor runs (after
        it has installed its own handler).
        """
        Service.startService(self)
        self._listen()
        for index in range(1, self.workers + 1):
            self._spawn(index)
        IReactorCore(self.reactor).callWhenRunning(
            signal.signal, signal.SIGTERM, self._terminated
        )

    def _terminated(self, signum: int, frame: object) -> None:
        """
        C{SIGTERM}: the first stops the reactor, and so drains the workers
        (L{stopService}); one more while they drain is passed on, and cuts
        their sessions.  Exiting this way, not by the reactor's own
        handler, ends the supervisor with status 0, as a single server's
        drain does.
        """
        reactor = IReactorFromThreads(self.reactor)
        if self._stopping:
            reactor.callFromThread(self.signalWorkers, signal.SIGTERM)
        else:
            reactor.callFromThread(IReactorCore(self.reactor).stop)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        spec = WorkerSpec(
            argv=self.argv,
            sockets=self.sockets,
            index=index,
            maxSessions=shareOf(self.maxSessions, self.workers),
            supervisor=os.getpid(),
            textLog=self.textLog,
        )
        environment = dict(os.environ)
        if self.metricsDirectory is not None:
            environment[METRICS_DIRECTORY] = self.metricsDirectory
        childFDs: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        for shared in self.sockets:
            childFDs[shared.fd] = shared.fd
        protocol = WorkerProtocol(index, self._ended, self.textLog)
        protocol.started = IReactorTime(self.reactor).seconds()
        IReactorProcess(self.reactor).spawnProcess(
            protocol,
            sys.executable,
            [sys.executable, "-c", WORKER_MAIN, spec.encode()],
            env=environment,
            childFDs=childFDs,
        )
        self._running[index] = protocol
        _log.info("worker {worker} started (pid {pid})", worker=index, pid=protocol.pid)

    def _ended(self, protocol: WorkerProtocol, reason: Failure) -> None:
        index = protocol.index
        if self._running.get(index) is protocol:
            del self._running[index]
        if self.metricsDirectory is not None and protocol.pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(protocol.pid, self.metricsDirectory)
        status = getattr(reason.value, "exitCode", None)
        signalled = getattr(reason.value, "signal", None)
        how = f"signal {signalled}" if signalled else f"status {status}"
        if self._stopping:
            _log.info(
                "worker {worker} (pid {pid}) exited ({how})",
                worker=index,
                pid=protocol.pid,
                how=how,
            )
            if not self._running and self._allEnded is not None:
                allEnded, self._allEnded = self._allEnded, None
                allEnded.callback(None)
            return
        now = IReactorTime(self.reactor).seconds()
        delay = self._backoff.get(index, FIRST_BACKOFF)
        if now - protocol.started >= STABLE_AFTER:
            delay = FIRST_BACKOFF
        self._backoff[index] = min(delay * 2, LONGEST_BACKOFF)
        _log.warn(
            "worker {worker} (pid {pid}) died ({how}); restarting it in {delay:g} s",
            worker=index,
            pid=protocol.pid,
            how=how,
            delay=delay,
        )
        self._restarts[index] = IReactorTime(self.reactor).callLater(
            delay, self._spawn, index
        )

    def signalWorkers(self, signum: int) -> None:
        """
        Send C{signum} to every running worker.
        """
        for protocol in list(self._running.values()):
            transport = protocol.transport
            if transport is not None:
                try:
                    IProcessTransport(transport).signalProcess(
                        signal.Signals(signum).name[3:]
                    )
                except Exception:  # it has just exited: nothing to tell
                    pass

    def hangup(self) -> None:
        """
        C{SIGHUP}: every worker reloads.
        """
        _log.info(
            "SIGHUP received: passed to {count} workers", count=len(self._running)
        )
        self.signalWorkers(signal.SIGHUP)

    def stopService(self) -> defer.Deferred[None]:
        """
        Tell every worker to drain (C{SIGTERM}), kill any still running
        after the drain timeout and a margin, then close the sockets.
        """
        Service.stopService(self)
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        ended: defer.Deferred[None] = defer.Deferred()
        if self._running:
            self._allEnded = ended
            _log.info("stopping: {count} workers drain", count=len(self._running))
            self.signalWorkers(signal.SIGTERM)
            killer = IReactorTime(self.reactor).callLater(
                self.drainTimeout + EXIT_MARGIN, self.signalWorkers, signal.SIGKILL
            )

            def cancelKiller(result: None) -> None:
                if killer.active():
                    killer.cancel()

            ended.addCallback(cancelKiller)
        else:
            ended.callback(None)

        def closePorts(result: None) -> defer.Deferred[Any]:
            stopping = [defer.maybeDeferred(port.stopListening) for port in self.ports]
            self.ports.clear()
            if self.metricsDirectory is not None:
                shutil.rmtree(self.metricsDirectory, ignore_errors=True)
            return defer.gatherResults(stopping)

        ended.addCallback(closePorts)
        ended.addCallback(lambda result: None)
        return ended


def metricsDirectory() -> str:
    """
    A new, empty directory for the workers' metrics files.
    """
    return tempfile.mkdtemp(prefix="socks-twisted-metrics-")
