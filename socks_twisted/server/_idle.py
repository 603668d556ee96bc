"""
Idle detection that costs the data path nothing: a timer compares activity
counters instead of being reset on every byte.
"""

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: The counters are looked at this many times per timeout, so something idle
#: for the timeout is noticed within 1 + 1/CHECKS_PER_TIMEOUT of it.
CHECKS_PER_TIMEOUT = 4


class IdleWatch:
    """
    Call C{expired} once C{activity()} has not changed for C{timeout}
    seconds.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        timeout: float,
        activity: Callable[[], int],
        expired: Callable[[], None],
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._activity = activity
        self._expired = expired
        self._call: IDelayedCall | None = None
        self._lastCount = activity()
        self._lastChange = reactor.seconds()

    def start(self) -> None:
        """
        Start watching.
        """
        self._call = self._reactor.callLater(
            self._timeout / CHECKS_PER_TIMEOUT, self._check
        )

    def stop(self) -> None:
        """
        Stop watching; C{expired} will not be called.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _check(self) -> None:
        self._call = None
        now, count = self._reactor.seconds(), self._activity()
        if count != self._lastCount:
            self._lastCount, self._lastChange = count, now
        elif now - self._lastChange >= self._timeout:
            self._expired()
            return
        self.start()
