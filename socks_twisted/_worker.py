"""
A worker process of C{--workers N} (see L{socks_twisted._workers}): it
adopts the listening sockets its supervisor opened and serves them as a
server of its own, logging to standard output as JSON events, one a line.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorSocket,
    IStreamServerEndpoint,
)
from twisted.logger import globalLogBeginner, jsonFileLogObserver
from twisted.protocols.haproxy import proxyEndpoint
from zope.interface import implementer

from . import tap
from ._drain import ServerService
from ._listen import Listener
from ._startup import StartupError
from ._textlog import textObserver
from ._workers import METRICS_DIRECTORY, SharedSocket, WorkerSpec
from .server import SOCKSServerFactory, SOCKSServerProtocol


def main() -> None:
    """
    Serve until the supervisor says stop (C{SIGTERM}: drain, then exit).
    """
    from twisted.internet import reactor

    spec = WorkerSpec.decode(sys.argv[1])
    _endWithSupervisor(spec.supervisor)
    observer = (
        textObserver(sys.stdout, system=f"worker {spec.index}")
        if spec.textLog
        else jsonFileLogObserver(sys.stdout, recordSeparator="")
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    options = tap.Options(
        listeners=[adopted(reactor, shared) for shared in spec.sockets]
    )
    try:
        options.parseOptions(spec.argv)
    except Exception as e:  # the supervisor parsed the same: not expected
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1) from None
    SOCKSServerProtocol.sessionPrefix = f"{spec.index}."
    options["max-sessions"] = spec.maxSessions
    options["workers"] = 1
    options["metricsListener"] = None  # the supervisor serves the sum
    try:
        service = tap.makeService(options)
        # Listens (adopts) now, so that a failure ends the worker at once.
        service.privilegedStartService()
    except StartupError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1) from None
    if isinstance(service, ServerService) and os.environ.get(METRICS_DIRECTORY):
        # The metrics are served, by the supervisor: count busy sessions'
        # bytes as they go.
        cast(SOCKSServerFactory, service.factory).metrics.exported = True
    for shared in spec.sockets:
        os.close(shared.fd)  # adopted: the reactor holds its own copy
    core = cast(IReactorCore, reactor)
    core.callWhenRunning(service.startService)
    core.addSystemEventTrigger("before", "shutdown", service.stopService)
    core.run()


def _endWithSupervisor(supervisor: int) -> None:
    """
    Have the kernel send C{SIGTERM} (drain, then exit) if the supervisor
    dies without stopping this worker (killed with C{SIGKILL}, say), so no
    worker outlives it holding the ports.  Linux only; elsewhere a worker
    of a killed supervisor runs on until stopped.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before prctl: too late to ask
        os.kill(os.getpid(), signal.SIGTERM)


#: prctl(2)'s option to be signalled when the parent dies.
_PR_SET_PDEATHSIG = 1


def adopted(reactor: Any, shared: SharedSocket) -> Listener:
    """
    A listener that adopts C{shared} instead of opening a socket.
    """
    endpoint: IStreamServerEndpoint = AdoptedEndpoint(
        cast(IReactorSocket, reactor), shared.fd, shared.family
    )
    if shared.behindProxy:
        endpoint = proxyEndpoint(endpoint)
    return Listener(
        shared.description,
        endpoint,
        shared.loopbackOnly,
        behindProxy=shared.behindProxy,
    )


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """
    Listens by adopting a listening socket another process opened.
    """

    def __init__(self, reactor: IReactorSocket, fd: int, family: int) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        """
        Adopt the socket, serving C{factory} on it.
        """
        family = socket.AddressFamily(self._family)
        # IReactorSocket is annotated for a ServerFactory; any factory does.
        anyFactory: Any = factory
        return defer.execute(
            self._reactor.adoptStreamPort, self._fd, family, anyFactory
        )
