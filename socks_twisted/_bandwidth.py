"""
Bandwidth limits for the relay.

Throttling works by not reading: after each write of n bytes to one side,
n bytes are taken from the direction's token buckets; a bucket in debt
pauses the reading side until the debt is paid back.  Nothing sleeps and
nothing is buffered beyond what one read brings in (so a direction can run
ahead of its rate by at most one read, then waits it out).

The reading side is also paused by flow control (the other side's write
buffer is full), so the two reasons are combined by a L{PauseGate}: the
transport is paused by the first reason and resumed only when the last one
is lifted.
"""

import math
from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: The reason flow control pauses a reader: the other side's write buffer
#: is full.
FLOW_CONTROL = "flow control"

#: The reason a L{Throttle} pauses a reader: a bucket is in debt.
THROTTLE = "throttle"

#: A debt that would be paid back within this many seconds is no debt:
#: floating-point rounding of elapsed time must not cost a timer tick.
_TOLERANCE = 1e-6


def _checkPositive(name: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, not {value!r}")


class TokenBucket:
    """
    A byte budget refilled at C{rate} bytes per second up to C{burst}
    bytes.  Taking more than the balance is allowed and leaves a debt: the
    bytes have already been read, so the reader is made to wait instead.

    @param rate: Bytes per second; C{None} for unlimited.
    @param burst: The most the balance holds; by default one second's worth
        of C{rate}.  The bucket starts full.
    """

    def __init__(
        self, reactor: IReactorTime, rate: float | None, burst: float | None = None
    ) -> None:
        self._reactor = reactor
        self._rate: float | None = None
        self._givenBurst: float | None = None
        self._burst = 0.0
        self._tokens = 0.0
        self._stamp = reactor.seconds()
        self.setRate(rate, burst)

    @property
    def rate(self) -> float | None:
        """
        Bytes per second, or C{None} for unlimited.
        """
        return self._rate

    @property
    def burst(self) -> float:
        """
        The most the balance holds (0 when unlimited).
        """
        return self._burst if self._rate is not None else 0.0

    def setRate(self, rate: float | None, burst: float | None = None) -> None:
        """
        Change the rate (a reload); C{None} for unlimited.  What was earned
        at the old rate is kept, up to the new burst; a debt is kept too.
        A bucket that was unlimited starts full.

        @param burst: A new burst; by default the one given before, or one
            second's worth of the new rate if none was.
        """
        _checkPositive("rate", rate)
        _checkPositive("burst", burst)
        if burst is not None:
            self._givenBurst = burst
        wasUnlimited = self._rate is None
        if not wasUnlimited:
            self._refill()
        self._rate = rate
        if rate is None:
            return
        self._burst = self._givenBurst if self._givenBurst is not None else rate
        self._tokens = self._burst if wasUnlimited else min(self._tokens, self._burst)
        self._stamp = self._reactor.seconds()

    def take(self, count: int) -> float:
        """
        Consume C{count} bytes, going into debt if need be.  C{take(0)}
        only tells the delay.

        @return: Seconds until the balance is back to zero or more; C{0.0}
            if it is already (always, when unlimited).
        """
        if self._rate is None:
            return 0.0
        self._refill()
        self._tokens -= count
        if self._tokens >= 0:
            return 0.0
        delay = -self._tokens / self._rate
        return delay if delay > _TOLERANCE else 0.0

    def _refill(self) -> None:
        assert self._rate is not None
        now = self._reactor.seconds()
        # A clock stepped backwards earns nothing rather than a debt.
        earned = max(0.0, now - self._stamp) * self._rate
        self._tokens = min(self._burst, self._tokens + earned)
        self._stamp = now


class PauseGate:
    """
    Combines the reasons a producer is paused: the real C{pause} is called
    when the first reason appears and the real C{resume} when the last one
    is lifted, so one reason's resume never undoes another's pause.

    Pausing for a reason already in force, or resuming for one not in
    force, does nothing.
    """

    # Every relayed session has two: kept small.
    __slots__ = ("_pause", "_reasons", "_resume")

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause = pause
        self._resume = resume
        # A list, not a set: there are at most a few reasons, and an empty
        # set costs four times an empty list.
        self._reasons: list[str] = []

    @property
    def paused(self) -> bool:
        """
        Whether any reason is in force.
        """
        return bool(self._reasons)

    def pausedFor(self, reason: str) -> bool:
        """
        Whether C{reason} is in force.
        """
        return reason in self._reasons

    def pause(self, reason: str) -> None:
        """
        Pause for C{reason}.
        """
        if reason in self._reasons:
            return
        self._reasons.append(reason)
        if len(self._reasons) == 1:
            self._pause()

    def resume(self, reason: str) -> None:
        """
        Lift C{reason}; resume if no other reason is in force.
        """
        if reason not in self._reasons:
            return
        self._reasons.remove(reason)
        if not self._reasons:
            self._resume()


class Throttle:
    """
    Throttles one direction of a relay: after each write of n bytes, n are
    taken from every bucket (typically the session's own and the one its
    user shares with the user's other sessions); when any is in debt, the
    reading side is paused for the longest delay, then resumed.

    On waking it looks at the buckets again, since a shared bucket may have
    been drained further by other sessions meanwhile, and waits on if any
    is still in debt.  Give it a L{PauseGate}'s pause and resume for
    L{THROTTLE} so that waking never resumes a reader flow control paused.

    @param pause: Stop reading.
    @param resume: Start reading again.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        buckets: Sequence[TokenBucket],
        pause: Callable[[], None],
        resume: Callable[[], None],
    ) -> None:
        self._reactor = reactor
        self._buckets = tuple(buckets)
        self._pause = pause
        self._resume = resume
        self._call: IDelayedCall | None = None
        self._stopped = False

    @property
    def paused(self) -> bool:
        """
        Whether the throttle has the reader paused now.
        """
        return self._call is not None

    def transferred(self, count: int) -> None:
        """
        C{count} bytes were written in this direction.
        """
        if self._stopped:
            return
        delay = self._debt(count)
        if delay > 0 and self._call is None:
            self._pause()
            self._call = self._reactor.callLater(delay, self._wake)
        # Already paused: the bytes are taken, and _wake will see the debt.

    def stop(self) -> None:
        """
        The session ended: cancel any pending resume, take nothing more.
        """
        self._stopped = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _debt(self, count: int) -> float:
        return max((bucket.take(count) for bucket in self._buckets), default=0.0)

    def _wake(self) -> None:
        self._call = None
        delay = self._debt(0)
        if delay > 0:
            self._call = self._reactor.callLater(delay, self._wake)
        else:
            self._resume()


class _Shared:
    __slots__ = ("bucket", "users")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.users = 0


class BucketRegistry:
    """
    The buckets that users' sessions share: one per user with sessions,
    dropped when its last session releases it.

    A user whose last session ends forgets any debt, and a new session
    starts with a full bucket: at most one burst gained per reconnection.

    @param rate: Bytes per second per user; C{None} for unlimited (the
        buckets are still shared, so that L{setRate} can limit them later).
    @param burst: See L{TokenBucket}.
    """

    def __init__(
        self, reactor: IReactorTime, rate: float | None, burst: float | None = None
    ) -> None:
        _checkPositive("rate", rate)
        _checkPositive("burst", burst)
        self._reactor = reactor
        self._rate = rate
        self._burst = burst
        self._shared: dict[bytes, _Shared] = {}

    def __len__(self) -> int:
        return len(self._shared)

    def acquire(self, user: bytes) -> TokenBucket:
        """
        The bucket C{user}'s new session shares; L{release} it when the
        session ends.
        """
        shared = self._shared.get(user)
        if shared is None:
            shared = self._shared[user] = _Shared(
                TokenBucket(self._reactor, self._rate, self._burst)
            )
        shared.users += 1
        return shared.bucket

    def release(self, user: bytes) -> None:
        """
        One of C{user}'s sessions ended.
        """
        shared = self._shared.get(user)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del self._shared[user]

    def setRate(self, rate: float | None, burst: float | None = None) -> None:
        """
        Change the rate of every user's bucket (a reload), now and for new
        ones; see L{TokenBucket.setRate}.
        """
        _checkPositive("rate", rate)
        _checkPositive("burst", burst)
        self._rate = rate
        if burst is not None:
            self._burst = burst
        for shared in self._shared.values():
            shared.bucket.setRate(rate, burst)
