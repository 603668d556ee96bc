"""
Admission limits: how many sessions a client address or a user may hold at
once and open per second, and the back-off that shuts out a client address
that keeps failing authentication.

Everything is in memory, every call is O(1), and memory stays bounded under
an attack from many addresses:

  - an address or user with open sessions has one entry (so at most one per
    open session, which the factory already bounds);
  - one with no open session keeps its entry only until its new-session
    bucket has refilled (at most C{max(1, 1 / rate)} seconds), and at most
    C{maxTracked} such entries are kept: beyond that the oldest is dropped,
    which only forgives that one address part of a bucket;
  - an address with recent authentication failures has one entry until its
    failure window and back-off memory have passed, and at most
    C{maxTracked} are kept: beyond that the one at the front (its last
    failure the oldest, except that entries serving a back-off are moved to
    the back as the sweep passes them) is dropped, forgetting its failures
    or, rarely, lifting its back-off early.

Old entries are dropped a few at a time on each call, oldest first, so no
call ever scans a table.
"""

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, fields
from typing import Generic, TypeVar

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger

from .._addresses import unmapped

_log = Logger()

#: A refusal reason: the client address is in an authentication back-off.
BACK_OFF = "back_off"
#: A refusal reason: the client address has its most sessions open.
PER_CLIENT = "per_client"
#: A refusal reason: the user has its most sessions open.
PER_USER = "per_user"
#: A refusal reason: the client address or the user opens sessions too fast.
RATE = "rate"

#: Seconds over which authentication failures are counted: a window opens at
#: an address's first failure and the failures within it are counted.
FAILURE_WINDOW = 60.0

#: Seconds of an address's first back-off.
FIRST_BACK_OFF = 60.0

#: The longest back-off, in seconds.
LONGEST_BACK_OFF = 3600.0

#: The default bound on each table of entries kept for addresses without
#: open sessions (see the module docstring).
MAX_TRACKED = 100_000

#: Old entries examined per call: more than one, so that the tables shrink
#: faster than a call can grow them.
_SWEEP_PER_CALL = 2

_Key = TypeVar("_Key", bound=Hashable)


def clientKey(address: IAddress | None) -> str | None:
    """
    What a client is limited by: the canonical text of its IP address (an
    IPv4-mapped IPv6 address as IPv4, no IPv6 scope, so that one client has
    one key however the socket spells it), or C{None} for a UNIX socket
    client (or any address without an IP), which is never limited.
    """
    if isinstance(address, IPv4Address | IPv6Address):
        try:
            return unmapped(address.host)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class LimitSettings:
    """
    Admission limits; C{None} means no limit.  Every number given must be
    positive and finite.

    @ivar sessionsPerClient: Sessions one client address may have open.
    @ivar sessionsPerUser: Sessions one authenticated user may have open.
    @ivar newSessionsPerSecondPerClient: New sessions one client address may
        open per second, on average; a burst of one second's worth (at
        least one) is allowed.
    @ivar newSessionsPerSecondPerUser: The same, per user.
    @ivar authFailuresPerMinutePerClient: Authentication failures one
        client address may have within a minute; one more, and its new
        connections are refused for a back-off period (see
        L{Limiter.authFailed}).
    """

    sessionsPerClient: int | None = None
    sessionsPerUser: int | None = None
    newSessionsPerSecondPerClient: float | None = None
    newSessionsPerSecondPerUser: float | None = None
    authFailuresPerMinutePerClient: int | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            # NaN and infinity would poison the bucket arithmetic.
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"{field.name} must be a positive number, not {value!r}"
                )


class _Entry:
    """
    One client address's or user's open sessions and new-session bucket.

    @ivar tokens: Sessions it may open now, as of C{stamp}; C{None} when
        the bucket is full (or there is no rate limit).
    """

    __slots__ = ("open", "stamp", "tokens")

    def __init__(self, now: float) -> None:
        self.open = 0
        self.tokens: float | None = None
        self.stamp = now


def _burst(rate: float) -> float:
    """
    A new-session bucket's size: one second's worth, at least one session.
    """
    return max(rate, 1.0)


def _refill(entry: _Entry, rate: float, now: float) -> float:
    """
    Bring C{entry}'s bucket up to C{now} and return its tokens.
    """
    burst = _burst(rate)
    if entry.tokens is None:
        tokens = burst
    else:
        # A clock stepped backwards earns nothing rather than a debt.
        tokens = min(burst, entry.tokens + max(0.0, now - entry.stamp) * rate)
    entry.tokens, entry.stamp = tokens, now
    return tokens


def _isFull(entry: _Entry, rate: float | None, now: float) -> bool:
    if rate is None or entry.tokens is None:
        return True
    return _refill(entry, rate, now) >= _burst(rate)


class _Admissions(Generic[_Key]):
    """
    Open sessions and new-session buckets of client addresses or users.

    Entries with open sessions are in C{_open}; those without, kept only
    until their bucket is full again, are in C{_idle}, oldest first.
    """

    def __init__(self, tooMany: str, maxTracked: int) -> None:
        self._tooMany = tooMany
        self._maxTracked = maxTracked
        self._open: dict[_Key, _Entry] = {}
        self._idle: OrderedDict[_Key, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open) + len(self._idle)

    def admit(
        self, key: _Key, most: int | None, rate: float | None, now: float
    ) -> str | None:
        self._sweep(rate, now)
        entry = self._open.get(key)
        if entry is None:
            entry = self._idle.get(key)
        if most is not None and entry is not None and entry.open >= most:
            return self._tooMany
        if entry is None:
            entry = _Entry(now)
        if rate is None:
            entry.tokens = None
        else:
            tokens = _refill(entry, rate, now)
            if tokens < 1.0:
                return RATE  # only an idle or open entry gets here: kept
            entry.tokens = tokens - 1.0
        if entry.open == 0:
            self._idle.pop(key, None)
            self._open[key] = entry
        entry.open += 1
        return None

    def release(self, key: _Key, rate: float | None, now: float) -> None:
        self._sweep(rate, now)
        entry = self._open.get(key)
        if entry is None:
            return  # never admitted: nothing to give back
        entry.open -= 1
        if entry.open == 0:
            del self._open[key]
            if not _isFull(entry, rate, now):
                self._idle[key] = entry
                if len(self._idle) > self._maxTracked:
                    self._idle.popitem(last=False)

    def _sweep(self, rate: float | None, now: float) -> None:
        """
        Drop the oldest idle entries whose buckets have refilled.
        """
        for _ in range(_SWEEP_PER_CALL):
            if not self._idle:
                return
            key, entry = next(iter(self._idle.items()))
            if not _isFull(entry, rate, now):
                return
            del self._idle[key]


class _Failures:
    """
    One client address's authentication failures and back-off.

    @ivar windowStart: When its current failure window opened.
    @ivar count: Failures in that window.
    @ivar blockedUntil: When its latest back-off ends (or ended).
    @ivar period: The length of its latest back-off; 0 if it had none.
    """

    __slots__ = ("blockedUntil", "count", "period", "windowStart")

    def __init__(self, now: float) -> None:
        self.windowStart = now
        self.count = 0
        self.blockedUntil = 0.0
        self.period = 0.0

    def blocked(self, now: float) -> bool:
        # Bounded by the period too, so a clock stepped backwards cannot
        # stretch a back-off.
        return 0.0 < self.blockedUntil - now <= self.period

    def expired(self, now: float) -> bool:
        return (
            now >= self.blockedUntil + self.period
            and not 0.0 <= now - self.windowStart < FAILURE_WINDOW
        )


class Limiter:
    """
    Decides whether a new session may start, by its client address at
    accept and by its user once authenticated.

    A client address of C{None} (a UNIX socket client) is never limited.

    @param maxTracked: The bound on each table of entries kept for
        addresses or users without open sessions (see the module
        docstring).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        limits: LimitSettings,
        *,
        maxTracked: int = MAX_TRACKED,
    ) -> None:
        self._reactor = reactor
        self._limits = limits
        self._maxTracked = maxTracked
        self._clients: _Admissions[str] = _Admissions(PER_CLIENT, maxTracked)
        self._users: _Admissions[bytes] = _Admissions(PER_USER, maxTracked)
        # Most recently failed last: the front is the first to expire and
        # the first to evict (see _sweepFailures).
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    @property
    def limits(self) -> LimitSettings:
        """
        The limits in force.
        """
        return self._limits

    def configure(self, limits: LimitSettings) -> None:
        """
        Apply new limits (a reload).  They apply to admissions from now on;
        open sessions are kept and still counted, buckets keep their
        balance (capped to the new size), and back-offs in progress keep
        their end.  Turning the authentication failure limit off lifts the
        back-offs in progress; turning it back on restores them.
        """
        self._limits = limits

    def tracked(self) -> dict[str, int]:
        """
        How many entries each table holds now (for tests and metrics):
        C{"clients"}, C{"users"} and C{"failures"}.
        """
        return {
            "clients": len(self._clients),
            "users": len(self._users),
            "failures": len(self._failures),
        }

    def admitClient(self, client: str | None) -> str | None:
        """
        A connection from C{client} (its IP address) was accepted: may it
        start a session?

        @return: C{None} if it is admitted, and then counted (so
            L{releaseClient} must be called when it ends); otherwise why
            not: L{BACK_OFF}, L{PER_CLIENT} or L{RATE}.
        """
        if client is None:
            return None
        now = self._reactor.seconds()
        limits = self._limits
        self._sweepFailures(now)
        if limits.authFailuresPerMinutePerClient is not None:
            record = self._failures.get(client)
            if record is not None and record.blocked(now):
                return BACK_OFF
        return self._clients.admit(
            client,
            limits.sessionsPerClient,
            limits.newSessionsPerSecondPerClient,
            now,
        )

    def releaseClient(self, client: str | None) -> None:
        """
        A session L{admitClient} admitted has ended.
        """
        if client is None:
            return
        self._clients.release(
            client,
            self._limits.newSessionsPerSecondPerClient,
            self._reactor.seconds(),
        )

    def admitUser(self, user: bytes) -> str | None:
        """
        A session authenticated as C{user}: may it go on?

        @return: C{None} if it is admitted, and then counted (so
            L{releaseUser} must be called when it ends); otherwise why not:
            L{PER_USER} or L{RATE}.
        """
        limits = self._limits
        return self._users.admit(
            user,
            limits.sessionsPerUser,
            limits.newSessionsPerSecondPerUser,
            self._reactor.seconds(),
        )

    def releaseUser(self, user: bytes) -> None:
        """
        A session L{admitUser} admitted has ended.
        """
        self._users.release(
            user, self._limits.newSessionsPerSecondPerUser, self._reactor.seconds()
        )

    def authFailed(self, client: str | None) -> float | None:
        """
        A session from C{client} failed authentication.

        The rule: failures are counted in a window of L{FAILURE_WINDOW}
        seconds opened by the first failure after the previous window
        ended.  The failure that takes the count beyond
        C{authFailuresPerMinutePerClient} trips a back-off: the address's
        new connections are refused for L{FIRST_BACK_OFF} seconds, or, if
        it trips while a back-off is in progress or within one back-off
        period after it ended, for twice the previous period (at most
        L{LONGEST_BACK_OFF}), counted from now.  Each trip opens a new
        window, so tripping again takes as many failures again (from
        sessions accepted before the back-off, or after it ended).  Each
        trip is logged once, as one line.

        @return: The length of the back-off this failure started, or
            C{None} if it did not start one.
        """
        most = self._limits.authFailuresPerMinutePerClient
        if client is None or most is None:
            return None
        now = self._reactor.seconds()
        self._sweepFailures(now)
        record = self._failures.pop(client, None)
        if record is None:
            record = _Failures(now)
            if len(self._failures) >= self._maxTracked:
                self._failures.popitem(last=False)
        self._failures[client] = record
        if not 0.0 <= now - record.windowStart < FAILURE_WINDOW:
            record.windowStart, record.count = now, 0
        record.count += 1
        if record.count <= most:
            return None
        failures = record.count
        if record.period and now < record.blockedUntil + record.period:
            period = min(record.period * 2, LONGEST_BACK_OFF)
        else:
            period = FIRST_BACK_OFF
        record.period, record.blockedUntil = period, now + period
        record.windowStart, record.count = now, 0
        _log.warn(
            "refusing new connections from {client} for {period:g} s: "
            "{failures} authentication failures within {window:g} s",
            client=client,
            failures=failures,
            period=period,
            window=FAILURE_WINDOW,
        )
        return period

    def _sweepFailures(self, now: float) -> None:
        """
        Drop the oldest failure records that have expired.  One that only
        counts failures expires within L{FAILURE_WINDOW} of its last
        failure, so one not yet expired at the front means the rest are
        recent too; one still remembering a back-off may have an hour to
        go, so it is moved to the back instead of holding up the sweep
        (which also makes back-offs the last to be evicted).
        """
        for _ in range(_SWEEP_PER_CALL):
            if not self._failures:
                return
            client, record = next(iter(self._failures.items()))
            if record.expired(now):
                del self._failures[client]
            elif record.period:
                self._failures.move_to_end(client)
            else:
                return
