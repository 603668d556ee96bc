"""
Start-up failures that end C{twistd} with one line naming the option and a
non-zero exit status, and the service that listens on one C{--port}.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


class StartupError(SystemExit, Exception):
    """
    The server cannot start; the message says why and names the option.

    twistd lets an exception raised while it starts the application escape
    with its traceback.  This one is a C{SystemExit}, so Python prints only
    its message and exits with status 1; it is also an C{Exception}, so that
    twistd, which catches those on the way out, first removes its PID file
    and tells a daemonizing parent that the start failed.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


def _where(interface: object, port: object) -> str:
    """
    @param interface: The interface a port was to listen on, as
        L{CannotListenError} holds it (C{""} or C{None} for all, or none).
    @param port: Its port number, or a UNIX socket's path.

    @return: The address, as an operator would write it.
    """
    if isinstance(port, bytes):
        port = port.decode("utf-8", "replace")
    if interface is None:
        return str(port)
    host = str(interface) or "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def listenFailureMessage(description: str, reason: BaseException) -> str:
    """
    Say, in one line, why a C{--port} could not listen.

    @param description: The C{--port} description as the operator wrote it.
    @param reason: What listening raised.

    @return: The message.
    """
    prefix = f"--port {description}"
    if isinstance(reason, CannotListenError):
        where = _where(reason.interface, reason.port)
        cause = reason.socketError
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return f"{prefix}: address {where} is already in use"
        if isinstance(cause, OSError) and cause.strerror:
            cause = cause.strerror
        return f"{prefix}: cannot listen on {where}: {cause}"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{prefix}: cannot listen: {reason.strerror}"
    return f"{prefix}: cannot listen: {reason}"


class ListeningService(Service):
    """
    Listen on one C{--port} while running.

    A port that cannot be had when the service starts raises L{StartupError}
    then, so that C{twistd} stops before serving.  (An endpoint that only
    fails later can only be logged.)

    @ivar description: The C{--port} description, for messages.
    @ivar endpoint: Where to listen.
    @ivar factory: What serves each connection.
    @ivar listening: Called with each port once it listens.
    """

    def __init__(
        self,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        listening: Callable[[IListeningPort], None],
    ) -> None:
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.listening = listening
        self._pending: Deferred[Any] | None = None
        self._port: IListeningPort | None = None
        self._starting = False
        self._error: StartupError | None = None

    def privilegedStartService(self) -> None:
        """
        Listen now, while the process may still have the privileges a low
        port needs.

        @raise StartupError: If the endpoint fails at once.
        """
        Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        """
        Listen, unless L{privilegedStartService} already did.

        @raise StartupError: If the endpoint fails at once.
        """
        Service.startService(self)
        if self._pending is None and self._port is None:
            self._listen()

    def _listen(self) -> None:
        """
        Ask the endpoint to listen; report a failure that comes at once by
        raising it.
        """
        self._starting = True
        try:
            pending: Deferred[IListeningPort] = self.endpoint.listen(self.factory)
            self._pending = pending
            pending.addCallback(self._listened)
            pending.addErrback(self._failed)
        finally:
            self._starting = False
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _listened(self, port: IListeningPort) -> None:
        """
        Keep the port, and announce it.

        @param port: The listening port.
        """
        self._pending = None
        self._port = port
        self.listening(port)

    def _failed(self, reason: Failure) -> None:
        """
        Report a port that could not listen: by raising, if it failed
        within L{_listen}; in the log, if it failed later.

        @param reason: Why.
        """
        self._pending = None
        if reason.check(CancelledError):
            return
        assert reason.value is not None
        message = listenFailureMessage(self.description, reason.value)
        if self._starting:
            self._error = StartupError(message)
        else:
            _log.critical("{problem}", problem=message)

    def stopService(self) -> Deferred[None] | None:
        """
        Stop listening, or stop trying to.

        @return: Fires once the port is closed, if one was open.
        """
        Service.stopService(self)
        if self._pending is not None:
            self._pending.cancel()
        port, self._port = self._port, None
        if port is None:
            return None
        return port.stopListening()
