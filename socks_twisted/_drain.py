"""
Graceful shutdown on C{SIGTERM}: stop accepting at once, give the open
sessions up to C{--drain-timeout} seconds to end by themselves, cut what is
left, and exit with status 0.

Twisted's reactor stops at once on C{SIGTERM}, dropping every session, and
twistd then ends the process with the signal itself (status -15).
L{ServerService} replaces the reactor's C{SIGTERM} handler once the reactor
runs (the reactor installs its own as it starts), drains with a
L{Drainer}, and stops the reactor itself, so that twistd exits normally.  A
second C{SIGTERM}, or a C{SIGINT}, while draining cuts the remaining
sessions at once.  Services other than the SOCKS listeners (the metrics
endpoint) keep running until the reactor stops.
"""

from __future__ import annotations

import gc
import signal
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFromThreads,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()

#: How often, in seconds, a drain looks whether its sessions have ended.
POLL_INTERVAL = 0.05

#: What C{signal.signal} returns: a Python handler, C{SIG_DFL} or C{SIG_IGN},
#: or C{None} for a handler installed from C.
_Handler = Callable[[int, FrameType | None], Any] | int | None

#: Installs a signal handler and returns the one it replaces, as
#: C{signal.signal} does.
InstallHandler = Callable[[int, _Handler], _Handler]


class _Abortable(Protocol):
    def abortConnection(self) -> None: ...


class Session(Protocol):
    """
    What a drain needs of a session: its client's connection.
    """

    @property
    def client(self) -> _Abortable: ...


class SessionHolder(Protocol):
    """
    What a drain needs of the factory: the sessions open now.
    """

    @property
    def sessions(self) -> Collection[Session]: ...


@dataclass(frozen=True)
class DrainResult:
    """
    How a drain ended.

    @ivar drained: Sessions that ended by themselves while it waited.
    @ivar cut: Sessions it aborted.
    @ivar seconds: How long it took.
    """

    drained: int
    cut: int
    seconds: float


class Drainer:
    """
    Drain a server: stop its listeners at once, wait up to C{timeout}
    seconds for the sessions open then to end, and abort the ones left.

    @ivar timeout: Seconds the sessions are given; 0 cuts them at once.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        factory: SessionHolder,
        listeners: Iterable[IService],
        timeout: float,
    ) -> None:
        self._clock = reactor
        self._factory = factory
        self._listeners = list(listeners)
        self.timeout = timeout
        self._initial: list[Session] = []
        self._done: Deferred[DrainResult] | None = None
        self._began = 0.0
        self._pollCall: IDelayedCall | None = None
        self._timeoutCall: IDelayedCall | None = None
        self._finishCall: IDelayedCall | None = None
        self._cut = 0
        self._finished = False

    @property
    def draining(self) -> bool:
        """
        Whether it has started and not yet finished.
        """
        return self._done is not None and not self._finished

    def remaining(self) -> list[Session]:
        """
        @return: The sessions open when the drain started that are open
            still.
        """
        open = self._factory.sessions
        return [session for session in self._initial if session in open]

    def start(self) -> Deferred[DrainResult]:
        """
        Stop listening and start waiting.

        @return: Fires with the outcome once every session has ended or been
            cut; the outcome is logged too.

        @raise RuntimeError: If it has started already.
        """
        if self._done is not None:
            raise RuntimeError("this drain has started already")
        self._done = Deferred()
        self._began = self._clock.seconds()
        stopping = [
            maybeDeferred(listener.stopService).addErrback(self._stopFailed)
            for listener in self._listeners
        ]
        # The ports accept nothing more from now on (they stop reading at
        # once); they close on the reactor's next turn.
        self._initial = list(self._factory.sessions)
        if self._initial and self.timeout > 0:
            self._timeoutCall = self._clock.callLater(self.timeout, self._timedOut)
        DeferredList(stopping).addCallback(lambda _: self._begin())
        return self._done

    def _begin(self) -> None:
        """
        Once the ports are closed, say so, and wait for the sessions (or cut
        them at once).
        """
        if self._finished or self._finishCall is not None:
            return
        _log.info(
            "draining: no longer accepting; {sessions} session(s) open, "
            "given up to {timeout} seconds to end",
            sessions=len(self._initial),
            timeout=self.timeout,
        )
        if not self._initial:
            self._finish()
        elif self.timeout <= 0:
            self.cut()
        else:
            self._poll()

    def _stopFailed(self, reason: Failure) -> None:
        _log.failure("draining: a listener failed to stop", reason)

    def _poll(self) -> None:
        """
        Finish if every session has ended; else look again soon.
        """
        self._pollCall = None
        if not self.remaining():
            self._finish()
        else:
            self._pollCall = self._clock.callLater(POLL_INTERVAL, self._poll)

    def _timedOut(self) -> None:
        self._timeoutCall = None
        self.cut()

    def cut(self) -> None:
        """
        Abort every session left now, and finish once they have closed (on
        the reactor's next turn, so that their own log lines come first).
        Does nothing before L{start}, or once cutting has begun.
        """
        if self._done is None or self._finished or self._finishCall is not None:
            return
        self._cancelCalls()
        remaining = self.remaining()
        self._cut = len(remaining)
        for session in remaining:
            try:
                session.client.abortConnection()
            except Exception:
                _log.failure("draining: could not abort a session")
        self._finishCall = self._clock.callLater(0, self._finish)

    def _cancelCalls(self) -> None:
        for call in (self._pollCall, self._timeoutCall):
            if call is not None and call.active():
                call.cancel()
        self._pollCall = self._timeoutCall = None

    def _finish(self) -> None:
        """
        Log the outcome and report it.
        """
        self._finishCall = None
        self._cancelCalls()
        self._finished = True
        result = DrainResult(
            drained=len(self._initial) - self._cut,
            cut=self._cut,
            seconds=self._clock.seconds() - self._began,
        )
        _log.info(
            "drain finished: {drained} session(s) drained, {cut} cut, "
            "in {seconds:.3f} seconds",
            drained=result.drained,
            cut=result.cut,
            seconds=result.seconds,
        )
        assert self._done is not None
        self._done.callback(result)


class ServerService(MultiService):
    """
    The whole server: its services, plus a drain on C{SIGTERM} while the
    reactor runs.

    @ivar listeners: The services the drain stops at once (the SOCKS
        ports); the others keep running until the reactor stops.
    @ivar drainTimeout: Seconds a drain gives the sessions.
    @ivar onParent: Called with what the service is given as its parent
        (twistd's application), before it joins it.
    @ivar freezeHeap: Whether starting freezes the objects made so far
        (C{gc.freeze}): for a process that is the server, not for a program
        that embeds it or a test run.
    """

    def __init__(
        self,
        reactor: IReactorCore,
        factory: SessionHolder,
        drainTimeout: float,
        *,
        installHandler: InstallHandler = signal.signal,
        freezeHeap: bool = False,
    ) -> None:
        MultiService.__init__(self)
        self.freezeHeap = freezeHeap
        self.reactor = reactor
        self.factory = factory
        self.drainTimeout = drainTimeout
        self.listeners: list[IService] = []
        self.onParent: list[Callable[[object], object]] = []
        self.drainer: Drainer | None = None
        self._installHandler = installHandler
        self._previous: dict[int, _Handler] = {}
        self._whenRunning: Any = None

    def setServiceParent(self, parent: Any) -> None:
        """
        Run the L{onParent} hooks, then join C{parent}.
        """
        for hook in self.onParent:
            hook(parent)
        Service.setServiceParent(self, parent)

    def startService(self) -> None:
        """
        Start the services; catch C{SIGTERM} once the reactor runs, after
        the reactor has installed its own handler.
        """
        MultiService.startService(self)
        self._whenRunning = self.reactor.callWhenRunning(self._catch, signal.SIGTERM)
        if self.freezeHeap:
            # Everything made so far (modules, plugins, the listeners) lives
            # as long as the process: moved out of the collector's sight, it
            # is no longer traversed by every full collection, which the
            # garbage of short sessions triggers every few seconds.
            gc.freeze()

    def stopService(self) -> Deferred[None]:
        """
        Put the replaced signal handlers back, cut a drain still running,
        and stop the services.
        """
        if self._whenRunning is not None:
            self.reactor.removeSystemEventTrigger(self._whenRunning)
            self._whenRunning = None
        for signum, previous in self._previous.items():
            # A handler from C cannot be put back; the default is closest.
            self._installHandler(
                signum, signal.SIG_DFL if previous is None else previous
            )
        self._previous.clear()
        if self.drainer is not None:
            self.drainer.cut()
        stopped: Deferred[None] = MultiService.stopService(self)
        return stopped

    def _catch(self, signum: int) -> None:
        """
        Handle C{signum} from now on, remembering the handler it replaces.
        """
        self._whenRunning = None
        if signum not in self._previous:
            self._previous[signum] = self._installHandler(signum, self._received)

    def _received(self, signum: int, frame: FrameType | None) -> None:
        """
        A signal: leave the work to the reactor, since a signal can
        interrupt anything, the logging system included.
        """
        IReactorFromThreads(self.reactor).callFromThread(self.signalled, signum)

    def signalled(self, signum: int) -> None:
        """
        The first C{SIGTERM} drains; a C{SIGTERM} or C{SIGINT} while
        draining cuts the sessions left.

        @param signum: The signal.
        """
        name = signal.Signals(signum).name
        if self.drainer is None:
            self._catch(signal.SIGINT)
            self.drainer = Drainer(
                IReactorTime(self.reactor),
                self.factory,
                self.listeners,
                self.drainTimeout,
            )
            _log.info("{signal} received: draining", signal=name)
            self.drainer.start().addCallback(self._drained)
        elif self.drainer.draining:
            _log.info(
                "{signal} received while draining: cutting the {sessions} "
                "session(s) left",
                signal=name,
                sessions=len(self.drainer.remaining()),
            )
            self.drainer.cut()

    def _drained(self, result: DrainResult) -> None:
        """
        Stop the reactor, so that twistd exits with status 0.
        """
        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass
