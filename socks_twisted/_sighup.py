"""
C{SIGHUP}: caught, logged and ignored, so that it no longer ends the server
and every session with it.  (It will reload the configuration once there is
a configuration to reload.)
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

_log = Logger()

#: What is logged for each C{SIGHUP}.
IGNORED_MESSAGE = "SIGHUP received: ignored (nothing to reload)"

#: What L{signal.signal} returns: a Python handler, C{SIG_DFL} or C{SIG_IGN},
#: or L{None} for a handler installed from C.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class IgnoreSIGHUPService(Service):
    """
    While running, catch C{SIGHUP} and log one line for it.

    @ivar reactor: The reactor the log line is written from.
    """

    def __init__(self, reactor: IReactorFromThreads) -> None:
        self.reactor = reactor
        self._previous: _Handler = None
        self._installed = False

    def startService(self) -> None:
        """
        Install the handler, remembering the one it replaces.
        """
        Service.startService(self)
        self._previous = signal.signal(signal.SIGHUP, self._received)
        self._installed = True

    def stopService(self) -> None:
        """
        Put the replaced handler back.
        """
        if self._installed:
            # A handler from C cannot be put back; the default is closest.
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGHUP, previous)
            self._installed = False
        Service.stopService(self)

    def _received(self, signum: int, frame: FrameType | None) -> None:
        """
        Handle C{SIGHUP}: leave the logging to the reactor, since a signal
        can interrupt the logging system itself.

        @param signum: C{SIGHUP}.
        @param frame: The interrupted frame.
        """
        self.reactor.callFromThread(self._logIgnored)

    def _logIgnored(self) -> None:
        """
        Say that a C{SIGHUP} came and changed nothing.
        """
        _log.info(IGNORED_MESSAGE)
