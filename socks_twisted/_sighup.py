"""
C{SIGHUP}: caught so that it no longer ends the server and every session
with it; it reloads the configuration file when there is one, and is logged
and otherwise ignored when there is not.
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

#: What C{signal.signal} returns: a Python handler, C{SIG_DFL} or C{SIG_IGN},
#: or C{None} for a handler installed from C.
_Handler = Callable[[int, FrameType | None], Any] | int | None


def logIgnored() -> None:
    """
    Say that a C{SIGHUP} came and changed nothing.
    """
    _log.info(IGNORED_MESSAGE)


class SIGHUPService(Service):
    """
    While running, catch C{SIGHUP} and call C{onHangup} for it, from the
    reactor thread.

    @ivar reactor: The reactor C{onHangup} is called from.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        onHangup: Callable[[], object] = logIgnored,
    ) -> None:
        self.reactor = reactor
        self._onHangup = onHangup
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
        Handle C{SIGHUP}: leave the work to the reactor, since a signal can
        interrupt anything, the logging system included.

        @param signum: C{SIGHUP}.
        @param frame: The interrupted frame.
        """
        self.reactor.callFromThread(self._onHangup)
