"""
Admission limits on a fake clock: per client address, per user, new
sessions per second, and the authentication failure back-off.
"""

from typing import cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.server._limits import (
    BACK_OFF,
    FIRST_BACK_OFF,
    LONGEST_BACK_OFF,
    PER_CLIENT,
    PER_USER,
    RATE,
    Limiter,
    LimitSettings,
    clientKey,
)

CLIENT = "192.0.2.1"
OTHER = "192.0.2.2"


class LimiterTestMixin:
    """
    A limiter on a fake clock.
    """

    clock: Clock

    def limiter(self, **limits: float | None) -> Limiter:
        """
        A limiter with C{limits} (L{LimitSettings} fields).
        """
        self.clock = Clock()
        return Limiter(self.clock, LimitSettings(**limits))  # type: ignore[arg-type]


class LimitSettingsTests(SynchronousTestCase):
    """
    L{LimitSettings} refuses numbers that make no sense.
    """

    def test_positive(self) -> None:
        """
        Zero, negative, NaN and infinite limits are refused.
        """
        for bad in (0, -1, float("nan"), float("inf")):
            self.assertRaises(ValueError, LimitSettings, sessionsPerClient=bad)
            self.assertRaises(
                ValueError, LimitSettings, newSessionsPerSecondPerUser=bad
            )

    def test_noLimits(self) -> None:
        """
        By default nothing is limited.
        """
        limiter = Limiter(Clock(), LimitSettings())
        for _ in range(1000):
            self.assertIsNone(limiter.admitClient(CLIENT))
            self.assertIsNone(limiter.admitUser(b"alice"))


class PerClientTests(LimiterTestMixin, SynchronousTestCase):
    """
    Concurrent sessions per client address.
    """

    def test_admitsUpToLimit(self) -> None:
        """
        A client address gets N sessions; the next is refused as
        C{per_client}; other addresses are not affected.
        """
        limiter = self.limiter(sessionsPerClient=3)
        for _ in range(3):
            self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)
        self.assertIsNone(limiter.admitClient(OTHER))

    def test_releaseFreesSlot(self) -> None:
        """
        A session ending frees its slot.
        """
        limiter = self.limiter(sessionsPerClient=1)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)
        limiter.releaseClient(CLIENT)
        self.assertIsNone(limiter.admitClient(CLIENT))

    def test_unixClientsUnlimited(self) -> None:
        """
        A client with no address (a UNIX socket) is never limited or
        tracked.
        """
        limiter = self.limiter(
            sessionsPerClient=1,
            newSessionsPerSecondPerClient=1,
            authFailuresPerMinutePerClient=1,
        )
        for _ in range(10):
            self.assertIsNone(limiter.admitClient(None))
            self.assertIsNone(limiter.authFailed(None))
        limiter.releaseClient(None)
        self.assertEqual(limiter.tracked(), {"clients": 0, "users": 0, "failures": 0})

    def test_releaseUnknown(self) -> None:
        """
        Releasing a client never admitted does nothing.
        """
        limiter = self.limiter(sessionsPerClient=1)
        limiter.releaseClient(CLIENT)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)

    def test_configureKeepsCounts(self) -> None:
        """
        New limits apply to new admissions, counting the sessions already
        open; raising a limit admits more at once.
        """
        limiter = self.limiter()
        for _ in range(3):
            self.assertIsNone(limiter.admitClient(CLIENT))
        limiter.configure(LimitSettings(sessionsPerClient=2))
        self.assertEqual(limiter.limits.sessionsPerClient, 2)
        self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)
        limiter.releaseClient(CLIENT)
        self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)
        limiter.releaseClient(CLIENT)
        self.assertIsNone(limiter.admitClient(CLIENT))
        limiter.configure(LimitSettings(sessionsPerClient=4))
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)


class ClientRateTests(LimiterTestMixin, SynchronousTestCase):
    """
    New sessions per second per client address.
    """

    def test_burstThenRefused(self) -> None:
        """
        A client address may open one second's worth at once; the next is
        refused as C{rate}, whether or not the earlier ones ended.
        """
        limiter = self.limiter(newSessionsPerSecondPerClient=5)
        for _ in range(5):
            self.assertIsNone(limiter.admitClient(CLIENT))
            limiter.releaseClient(CLIENT)
        self.assertEqual(limiter.admitClient(CLIENT), RATE)
        self.assertIsNone(limiter.admitClient(OTHER))

    def test_refills(self) -> None:
        """
        The bucket refills with time at the rate.
        """
        limiter = self.limiter(newSessionsPerSecondPerClient=5)
        for _ in range(5):
            limiter.admitClient(CLIENT)
        self.clock.advance(0.19)
        self.assertEqual(limiter.admitClient(CLIENT), RATE)
        self.clock.advance(0.01)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), RATE)
        self.clock.advance(10)
        for _ in range(5):
            self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), RATE)

    def test_slowRateBurstOfOne(self) -> None:
        """
        A rate below one per second still allows one session, then one per
        1/rate seconds.
        """
        limiter = self.limiter(newSessionsPerSecondPerClient=0.1)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.clock.advance(9.9)
        self.assertEqual(limiter.admitClient(CLIENT), RATE)
        self.clock.advance(0.1)
        self.assertIsNone(limiter.admitClient(CLIENT))

    def test_concurrencyCheckedFirst(self) -> None:
        """
        A connection refused for too many sessions takes no token.
        """
        limiter = self.limiter(sessionsPerClient=1, newSessionsPerSecondPerClient=2)
        self.assertIsNone(limiter.admitClient(CLIENT))
        for _ in range(5):
            self.assertEqual(limiter.admitClient(CLIENT), PER_CLIENT)
        limiter.releaseClient(CLIENT)
        self.assertIsNone(limiter.admitClient(CLIENT))

    def test_configureRate(self) -> None:
        """
        A new rate applies from the next admission.
        """
        limiter = self.limiter(newSessionsPerSecondPerClient=1)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.admitClient(CLIENT), RATE)
        limiter.configure(LimitSettings())
        self.assertIsNone(limiter.admitClient(CLIENT))
        limiter.configure(LimitSettings(newSessionsPerSecondPerClient=10))
        self.clock.advance(0.1)
        self.assertIsNone(limiter.admitClient(CLIENT))


class PerUserTests(LimiterTestMixin, SynchronousTestCase):
    """
    Concurrent and new sessions per user.
    """

    def test_admitsUpToLimit(self) -> None:
        """
        A user gets N sessions; the next is refused as C{per_user}; a
        release frees a slot; other users are not affected.
        """
        limiter = self.limiter(sessionsPerUser=2)
        self.assertIsNone(limiter.admitUser(b"alice"))
        self.assertIsNone(limiter.admitUser(b"alice"))
        self.assertEqual(limiter.admitUser(b"alice"), PER_USER)
        self.assertIsNone(limiter.admitUser(b"bob"))
        limiter.releaseUser(b"alice")
        self.assertIsNone(limiter.admitUser(b"alice"))

    def test_rate(self) -> None:
        """
        A user may open its rate's worth of sessions at once, then more as
        the bucket refills.
        """
        limiter = self.limiter(newSessionsPerSecondPerUser=2)
        self.assertIsNone(limiter.admitUser(b"alice"))
        self.assertIsNone(limiter.admitUser(b"alice"))
        self.assertEqual(limiter.admitUser(b"alice"), RATE)
        self.clock.advance(0.5)
        self.assertIsNone(limiter.admitUser(b"alice"))

    def test_dropped(self) -> None:
        """
        A user with no sessions and a full bucket is forgotten.
        """
        limiter = self.limiter(sessionsPerUser=2, newSessionsPerSecondPerUser=2)
        limiter.admitUser(b"alice")
        limiter.releaseUser(b"alice")
        self.assertEqual(limiter.tracked()["users"], 1)
        self.clock.advance(1)
        limiter.releaseUser(b"nobody")  # any call sweeps
        self.assertEqual(limiter.tracked()["users"], 0)


class MemoryTests(LimiterTestMixin, SynchronousTestCase):
    """
    The limiter's tables stay bounded.
    """

    def test_droppedWhenIdle(self) -> None:
        """
        With no rate limit, an address is forgotten when its last session
        ends.
        """
        limiter = self.limiter(sessionsPerClient=2)
        limiter.admitClient(CLIENT)
        limiter.admitClient(CLIENT)
        limiter.releaseClient(CLIENT)
        self.assertEqual(limiter.tracked()["clients"], 1)
        limiter.releaseClient(CLIENT)
        self.assertEqual(limiter.tracked()["clients"], 0)

    def test_keptUntilBucketFull(self) -> None:
        """
        An address with no sessions is kept until its bucket has refilled,
        so that closing sessions does not reset its rate, then dropped.
        """
        limiter = self.limiter(newSessionsPerSecondPerClient=2)
        limiter.admitClient(CLIENT)
        limiter.admitClient(CLIENT)
        limiter.releaseClient(CLIENT)
        limiter.releaseClient(CLIENT)
        self.assertEqual(limiter.tracked()["clients"], 1)
        self.assertEqual(limiter.admitClient(CLIENT), RATE)
        self.clock.advance(1)
        self.assertIsNone(limiter.admitClient(OTHER))
        self.assertEqual(limiter.tracked()["clients"], 1)  # OTHER, open

    def test_manyAddressesSwept(self) -> None:
        """
        Under many addresses each opening one short session, the table
        holds only those within one refill period.
        """
        limiter = self.limiter(newSessionsPerSecondPerClient=1)
        for i in range(10_000):
            client = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            self.assertIsNone(limiter.admitClient(client))
            limiter.releaseClient(client)
            self.clock.advance(0.01)
        # One second's worth of addresses (100), give or take the sweep.
        self.assertLessEqual(limiter.tracked()["clients"], 102)

    def test_idleCap(self) -> None:
        """
        At most C{maxTracked} addresses without sessions are kept; the
        oldest is dropped.
        """
        self.clock = Clock()
        limiter = Limiter(
            self.clock, LimitSettings(newSessionsPerSecondPerClient=0.01), maxTracked=5
        )
        for i in range(20):
            limiter.admitClient(f"10.0.0.{i}")
            limiter.releaseClient(f"10.0.0.{i}")
        self.assertEqual(limiter.tracked()["clients"], 5)
        self.assertIsNone(limiter.admitClient("10.0.0.0"))  # forgotten
        self.assertEqual(limiter.admitClient("10.0.0.19"), RATE)

    def test_openNeverEvicted(self) -> None:
        """
        Addresses with open sessions are not subject to the cap: their
        counts stay right.
        """
        self.clock = Clock()
        limiter = Limiter(self.clock, LimitSettings(sessionsPerClient=1), maxTracked=2)
        for i in range(10):
            limiter.admitClient(f"10.0.0.{i}")
        self.assertEqual(limiter.tracked()["clients"], 10)
        self.assertEqual(limiter.admitClient("10.0.0.0"), PER_CLIENT)

    def test_failureCap(self) -> None:
        """
        At most C{maxTracked} addresses' failures are kept; the oldest is
        dropped.
        """
        self.clock = Clock()
        limiter = Limiter(
            self.clock, LimitSettings(authFailuresPerMinutePerClient=5), maxTracked=3
        )
        for i in range(10):
            limiter.authFailed(f"10.0.0.{i}")
        self.assertEqual(limiter.tracked()["failures"], 3)

    def test_failuresSwept(self) -> None:
        """
        Failure counts are forgotten once their window has passed, and a
        back-off once its period has passed twice over.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=1)
        limiter.authFailed(CLIENT)
        limiter.authFailed(CLIENT)  # a back-off
        limiter.authFailed(OTHER)
        self.clock.advance(FIRST_BACK_OFF)
        limiter.admitClient("192.0.2.99")
        self.assertEqual(limiter.tracked()["failures"], 1)  # CLIENT remembered
        self.clock.advance(FIRST_BACK_OFF)
        limiter.admitClient("192.0.2.99")
        self.assertEqual(limiter.tracked()["failures"], 0)


class BackOffTests(LimiterTestMixin, SynchronousTestCase):
    """
    Authentication failures per client address per minute, and the
    back-off.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def backOffLines(self) -> list[str]:
        """
        The back-off log lines so far.
        """
        return [
            formatEvent(e)
            for e in self.events
            if "refusing new connections" in e.get("log_format", "")
        ]

    def failAuth(self, limiter: Limiter, times: int, client: str = CLIENT) -> None:
        """
        Record C{times} authentication failures from C{client}.
        """
        for _ in range(times):
            limiter.authFailed(client)

    def test_tripsBeyondLimit(self) -> None:
        """
        N failures within a minute leave the address admitted; the N+1th
        starts a back-off: its new connections are refused as C{back_off},
        other addresses' are not.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=3)
        self.failAuth(limiter, 3)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(limiter.authFailed(CLIENT), FIRST_BACK_OFF)
        self.assertEqual(limiter.admitClient(CLIENT), BACK_OFF)
        self.assertIsNone(limiter.admitClient(OTHER))

    def test_windowForgets(self) -> None:
        """
        Failures more than a minute apart do not add up.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=3)
        self.failAuth(limiter, 3)
        self.clock.advance(60)
        self.failAuth(limiter, 3)
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.assertEqual(self.backOffLines(), [])

    def test_lastsItsPeriod(self) -> None:
        """
        A back-off lasts its period, then lifts.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=1)
        self.failAuth(limiter, 2)
        self.clock.advance(FIRST_BACK_OFF - 0.1)
        self.assertEqual(limiter.admitClient(CLIENT), BACK_OFF)
        self.clock.advance(0.1)
        self.assertIsNone(limiter.admitClient(CLIENT))

    def test_growsWhenTrippedAgain(self) -> None:
        """
        Tripping again while blocked, or within one period after the block,
        doubles the period, up to an hour.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=1)
        periods = []
        for _ in range(8):
            self.failAuth(limiter, 1)
            periods.append(limiter.authFailed(CLIENT))
            self.clock.advance(1)
        self.assertEqual(periods, [60, 120, 240, 480, 960, 1920, 3600, 3600])
        self.assertEqual(LONGEST_BACK_OFF, 3600)
        self.clock.advance(3599 - 1)
        self.assertEqual(limiter.admitClient(CLIENT), BACK_OFF)
        self.clock.advance(1)
        self.assertIsNone(limiter.admitClient(CLIENT))

    def test_growsSoonAfter(self) -> None:
        """
        Tripping again within one period after a back-off ends doubles it;
        later than that, it starts over.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=1)
        self.failAuth(limiter, 2)
        self.clock.advance(FIRST_BACK_OFF + 30)
        self.failAuth(limiter, 1)
        self.assertEqual(limiter.authFailed(CLIENT), 2 * FIRST_BACK_OFF)
        self.clock.advance(2 * FIRST_BACK_OFF + 2 * FIRST_BACK_OFF)
        self.failAuth(limiter, 1)
        self.assertEqual(limiter.authFailed(CLIENT), FIRST_BACK_OFF)

    def test_loggedOncePerPeriod(self) -> None:
        """
        A back-off is logged once, naming the address, the failures and
        the period; connections refused during it are not logged.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=2)
        self.failAuth(limiter, 3)
        for _ in range(100):
            self.assertEqual(limiter.admitClient(CLIENT), BACK_OFF)
        lines = self.backOffLines()
        self.assertEqual(len(lines), 1)
        self.assertIn(CLIENT, lines[0])
        self.assertIn("3 authentication failures", lines[0])
        self.assertIn("60 s", lines[0])
        self.failAuth(limiter, 2)  # from sessions accepted before: not a trip
        self.assertEqual(len(self.backOffLines()), 1)

    def test_configureOff(self) -> None:
        """
        Turning the failure limit off lifts back-offs and stops counting.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=1)
        self.failAuth(limiter, 2)
        limiter.configure(LimitSettings())
        self.assertIsNone(limiter.admitClient(CLIENT))
        self.failAuth(limiter, 10, OTHER)
        self.assertIsNone(limiter.admitClient(OTHER))
        limiter.configure(LimitSettings(authFailuresPerMinutePerClient=1))
        self.assertEqual(limiter.admitClient(CLIENT), BACK_OFF)

    def test_configureLimit(self) -> None:
        """
        A new failure limit applies to the next failure.
        """
        limiter = self.limiter(authFailuresPerMinutePerClient=5)
        self.failAuth(limiter, 3)
        limiter.configure(LimitSettings(authFailuresPerMinutePerClient=2))
        self.assertEqual(limiter.authFailed(CLIENT), FIRST_BACK_OFF)


class ClientKeyTests(SynchronousTestCase):
    """
    L{clientKey} names a client by its canonical IP address.
    """

    def test_ipv4(self) -> None:
        """
        An IPv4 client is its address.
        """
        self.assertEqual(clientKey(IPv4Address("TCP", "192.0.2.1", 1080)), "192.0.2.1")

    def test_ipv6(self) -> None:
        """
        An IPv6 client is its canonical address without scope; an
        IPv4-mapped one is the IPv4 address.
        """
        self.assertEqual(
            clientKey(IPv6Address("TCP", "2001:DB8:0::1%eth0", 1080)), "2001:db8::1"
        )
        self.assertEqual(
            clientKey(IPv6Address("TCP", "::ffff:192.0.2.1", 1080)), "192.0.2.1"
        )

    def test_unix(self) -> None:
        """
        A UNIX socket client, or none, has no key.
        """
        self.assertIsNone(clientKey(UNIXAddress(None)))
        self.assertIsNone(clientKey(None))
