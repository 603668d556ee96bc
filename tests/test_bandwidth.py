"""
Token buckets, the pause gate and the relay throttle, on a fake clock.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._bandwidth import (
    FLOW_CONTROL,
    THROTTLE,
    BucketRegistry,
    PauseGate,
    Throttle,
    TokenBucket,
)
from socks_twisted.server._settings import ServerSettings
from socks_twisted.server._throttling import SessionBandwidth

KiB = 1024
MiB = 1024 * KiB


class FakeReader:
    """
    Stands for a transport's reading: counts real pauses and resumes.
    """

    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0
        self.resumes = 0

    def pause(self) -> None:
        """
        Stop reading.
        """
        self.reading = False
        self.pauses += 1

    def resume(self) -> None:
        """
        Start reading again.
        """
        self.reading = True
        self.resumes += 1


class TokenBucketTests(SynchronousTestCase):
    """
    L{TokenBucket}'s balance, debt and delays.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_startsFullWithOneSecondBurst(self) -> None:
        """
        A new bucket holds one second's worth by default: taking it all
        costs no delay.
        """
        bucket = TokenBucket(self.clock, 1000)
        self.assertEqual(bucket.burst, 1000)
        self.assertEqual(bucket.take(1000), 0.0)

    def test_debtDelay(self) -> None:
        """
        Taking beyond the balance leaves a debt; the delay is the debt over
        the rate, and shrinks as time passes.
        """
        bucket = TokenBucket(self.clock, 1000)
        self.assertAlmostEqual(bucket.take(1500), 0.5)
        self.assertAlmostEqual(bucket.take(500), 1.0)
        self.clock.advance(0.25)
        self.assertAlmostEqual(bucket.take(0), 0.75)
        self.clock.advance(0.75)
        self.assertEqual(bucket.take(0), 0.0)

    def test_refillCappedAtBurst(self) -> None:
        """
        An idle bucket refills only up to its burst.
        """
        bucket = TokenBucket(self.clock, 1000, burst=200)
        self.assertEqual(bucket.take(200), 0.0)
        self.clock.advance(100)
        self.assertEqual(bucket.take(200), 0.0)
        self.assertAlmostEqual(bucket.take(100), 0.1)

    def test_explicitBurst(self) -> None:
        """
        A burst given explicitly sets the balance a full bucket holds.
        """
        bucket = TokenBucket(self.clock, 100, burst=1000)
        self.assertEqual(bucket.take(1000), 0.0)
        self.assertAlmostEqual(bucket.take(50), 0.5)

    def test_unlimited(self) -> None:
        """
        A bucket with no rate never delays.
        """
        bucket = TokenBucket(self.clock, None)
        self.assertEqual(bucket.take(10**12), 0.0)
        self.assertIsNone(bucket.rate)

    def test_setRateKeepsDebt(self) -> None:
        """
        A new rate keeps the debt and repays it at the new rate; the
        default burst follows the rate.
        """
        bucket = TokenBucket(self.clock, 1000)
        self.assertAlmostEqual(bucket.take(3000), 2.0)
        bucket.setRate(2000)
        self.assertEqual(bucket.burst, 2000)
        self.assertAlmostEqual(bucket.take(0), 1.0)

    def test_setRateCapsBalance(self) -> None:
        """
        Lowering the rate caps the balance at the new burst.
        """
        bucket = TokenBucket(self.clock, 1000)
        bucket.setRate(100)
        self.assertEqual(bucket.take(100), 0.0)
        self.assertAlmostEqual(bucket.take(100), 1.0)

    def test_setRateKeepsGivenBurst(self) -> None:
        """
        A burst given explicitly is kept across a rate change unless a new
        one is given.
        """
        bucket = TokenBucket(self.clock, 1000, burst=10)
        bucket.setRate(5000)
        self.assertEqual(bucket.burst, 10)
        bucket.setRate(5000, burst=20)
        self.assertEqual(bucket.burst, 20)

    def test_setRateUnlimitedAndBack(self) -> None:
        """
        Making a bucket unlimited forgets its debt; limiting it again
        starts it full.
        """
        bucket = TokenBucket(self.clock, 1000)
        bucket.take(5000)
        bucket.setRate(None)
        self.assertEqual(bucket.take(10**9), 0.0)
        bucket.setRate(1000)
        self.assertEqual(bucket.take(1000), 0.0)
        self.assertAlmostEqual(bucket.take(1000), 1.0)

    def test_invalidRate(self) -> None:
        """
        A rate or burst that is not a positive finite number is refused.
        """
        for bad in (0, -1, float("nan"), float("inf")):
            self.assertRaises(ValueError, TokenBucket, self.clock, bad)
            self.assertRaises(ValueError, TokenBucket, self.clock, 1, bad)

    def test_clockBackwards(self) -> None:
        """
        A clock stepped backwards neither earns nor costs anything.
        """
        self.clock.advance(100)
        bucket = TokenBucket(self.clock, 1000)
        bucket.take(1000)
        self.clock.rightNow = 50
        self.assertEqual(bucket.take(0), 0.0)
        self.assertAlmostEqual(bucket.take(500), 0.5)


class PauseGateTests(SynchronousTestCase):
    """
    L{PauseGate} pauses on the first reason and resumes on the last.
    """

    def setUp(self) -> None:
        self.reader = FakeReader()
        self.gate = PauseGate(self.reader.pause, self.reader.resume)

    def test_oneReason(self) -> None:
        """
        One reason pauses and resumes the producer.
        """
        self.gate.pause(THROTTLE)
        self.assertFalse(self.reader.reading)
        self.assertTrue(self.gate.paused)
        self.gate.resume(THROTTLE)
        self.assertTrue(self.reader.reading)
        self.assertFalse(self.gate.paused)

    def test_flowControlKeptAcrossThrottleResume(self) -> None:
        """
        The throttle lifting its pause does not resume a producer flow
        control paused.
        """
        self.gate.pause(FLOW_CONTROL)
        self.gate.pause(THROTTLE)
        self.gate.resume(THROTTLE)
        self.assertFalse(self.reader.reading)
        self.assertTrue(self.gate.pausedFor(FLOW_CONTROL))
        self.gate.resume(FLOW_CONTROL)
        self.assertTrue(self.reader.reading)
        self.assertEqual((self.reader.pauses, self.reader.resumes), (1, 1))

    def test_throttleKeptAcrossFlowControlResume(self) -> None:
        """
        Flow control lifting its pause does not resume a producer the
        throttle paused.
        """
        self.gate.pause(THROTTLE)
        self.gate.pause(FLOW_CONTROL)
        self.gate.resume(FLOW_CONTROL)
        self.assertFalse(self.reader.reading)
        self.gate.resume(THROTTLE)
        self.assertTrue(self.reader.reading)
        self.assertEqual((self.reader.pauses, self.reader.resumes), (1, 1))

    def test_repeatsIgnored(self) -> None:
        """
        Pausing twice for one reason needs one resume; resuming for a
        reason not in force does nothing.
        """
        self.gate.resume(FLOW_CONTROL)
        self.assertEqual(self.reader.resumes, 0)
        self.gate.pause(FLOW_CONTROL)
        self.gate.pause(FLOW_CONTROL)
        self.assertEqual(self.reader.pauses, 1)
        self.gate.resume(FLOW_CONTROL)
        self.assertTrue(self.reader.reading)
        self.gate.resume(FLOW_CONTROL)
        self.assertEqual(self.reader.resumes, 1)


class ThrottleTests(SynchronousTestCase):
    """
    L{Throttle} pauses a reader while a bucket is in debt.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.reader = FakeReader()
        self.gate = PauseGate(self.reader.pause, self.reader.resume)

    def throttle(self, *buckets: TokenBucket) -> Throttle:
        """
        A throttle over C{buckets} pausing the reader through the gate.
        """
        return Throttle(
            self.clock,
            buckets,
            lambda: self.gate.pause(THROTTLE),
            lambda: self.gate.resume(THROTTLE),
        )

    def test_noDebtNoPause(self) -> None:
        """
        Writes within the balance do not pause the reader.
        """
        throttle = self.throttle(TokenBucket(self.clock, 1000))
        throttle.transferred(1000)
        self.assertTrue(self.reader.reading)
        self.assertFalse(throttle.paused)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pausesForDelay(self) -> None:
        """
        A write into debt pauses the reader until the debt is repaid.
        """
        throttle = self.throttle(TokenBucket(self.clock, 1000))
        throttle.transferred(1500)
        self.assertFalse(self.reader.reading)
        self.assertTrue(throttle.paused)
        self.clock.advance(0.49)
        self.assertFalse(self.reader.reading)
        self.clock.advance(0.01)
        self.assertTrue(self.reader.reading)
        self.assertFalse(throttle.paused)

    def test_moreWhilePaused(self) -> None:
        """
        Bytes written while paused (the rest of a read) add to the debt and
        the reader waits for all of it.
        """
        throttle = self.throttle(TokenBucket(self.clock, 1000))
        throttle.transferred(1500)
        throttle.transferred(500)
        self.assertEqual(self.reader.pauses, 1)
        self.clock.advance(0.5)
        self.assertFalse(self.reader.reading)
        self.clock.advance(0.5)
        self.assertTrue(self.reader.reading)

    def test_longestDelayWins(self) -> None:
        """
        With two buckets the reader waits for the one deeper in debt.
        """
        fast = TokenBucket(self.clock, 10_000, burst=1000)
        slow = TokenBucket(self.clock, 1000)
        throttle = self.throttle(fast, slow)
        throttle.transferred(3000)
        self.clock.advance(0.2)
        self.assertFalse(self.reader.reading)
        self.clock.advance(1.8)
        self.assertTrue(self.reader.reading)

    def test_sharedBucketDrainedMeanwhile(self) -> None:
        """
        A bucket shared with another session that drained it while this one
        slept keeps this one paused until that debt is repaid too.
        """
        shared = TokenBucket(self.clock, 1000)
        mine = self.throttle(shared)
        other = Throttle(self.clock, [shared], lambda: None, lambda: None)
        mine.transferred(1500)
        other.transferred(1000)
        self.clock.advance(0.5)
        self.assertFalse(self.reader.reading)
        self.clock.advance(1.0)
        self.assertTrue(self.reader.reading)

    def test_flowControlPauseSurvivesThrottleResume(self) -> None:
        """
        The throttle waking does not resume a reader flow control paused
        meanwhile; flow control's resume then does.
        """
        throttle = self.throttle(TokenBucket(self.clock, 1000))
        throttle.transferred(2000)
        self.gate.pause(FLOW_CONTROL)
        self.clock.advance(1)
        self.assertFalse(self.reader.reading)
        self.gate.resume(FLOW_CONTROL)
        self.assertTrue(self.reader.reading)

    def test_throttlePauseSurvivesFlowControlResume(self) -> None:
        """
        Flow control resuming does not undo the throttle's pause.
        """
        throttle = self.throttle(TokenBucket(self.clock, 1000))
        self.gate.pause(FLOW_CONTROL)
        throttle.transferred(2000)
        self.gate.resume(FLOW_CONTROL)
        self.assertFalse(self.reader.reading)
        self.clock.advance(1)
        self.assertTrue(self.reader.reading)

    def test_stopCancelsResume(self) -> None:
        """
        Stopping the throttle cancels the pending resume and ignores later
        writes.
        """
        throttle = self.throttle(TokenBucket(self.clock, 1000))
        throttle.transferred(2000)
        throttle.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertFalse(self.reader.reading)
        throttle.transferred(10**9)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unlimitedBucketsNeverPause(self) -> None:
        """
        A throttle over unlimited buckets, or none, never pauses.
        """
        for throttle in (self.throttle(TokenBucket(self.clock, None)), self.throttle()):
            throttle.transferred(10**12)
        self.assertTrue(self.reader.reading)
        self.assertEqual(self.reader.pauses, 0)

    def test_transferTakesRateTime(self) -> None:
        """
        10 MiB written 64 KiB per read at 1 MiB/s, with a 64 KiB burst,
        takes about 10 s of clock time (10 s less the burst), however the
        reads fall.
        """
        total, chunk = 10 * MiB, 64 * KiB
        throttle = self.throttle(TokenBucket(self.clock, MiB, burst=chunk))
        sent = 0
        while True:
            while self.reader.reading and sent < total:
                throttle.transferred(chunk)
                sent += chunk
            if not throttle.paused:
                break
            self.clock.advance(
                self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds()
            )
        self.assertEqual(sent, total)
        self.assertTrue(9.0 <= self.clock.seconds() <= 11.0, self.clock.seconds())


class BucketRegistryTests(SynchronousTestCase):
    """
    L{BucketRegistry} shares one bucket among a user's sessions.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = BucketRegistry(self.clock, 1000)

    def test_shared(self) -> None:
        """
        A user's sessions get the same bucket; other users another one.
        """
        first = self.registry.acquire(b"alice")
        self.assertIs(self.registry.acquire(b"alice"), first)
        self.assertIsNot(self.registry.acquire(b"bob"), first)
        self.assertEqual(first.rate, 1000)

    def test_droppedWithLastSession(self) -> None:
        """
        A user's bucket is dropped when its last session releases it.
        """
        first = self.registry.acquire(b"alice")
        self.registry.acquire(b"alice")
        self.registry.release(b"alice")
        self.assertEqual(len(self.registry), 1)
        self.registry.release(b"alice")
        self.assertEqual(len(self.registry), 0)
        self.assertIsNot(self.registry.acquire(b"alice"), first)

    def test_releaseUnknown(self) -> None:
        """
        Releasing a user with no bucket does nothing.
        """
        self.registry.release(b"nobody")
        self.assertEqual(len(self.registry), 0)

    def test_setRate(self) -> None:
        """
        A new rate applies to existing buckets and new ones.
        """
        bucket = self.registry.acquire(b"alice")
        self.registry.setRate(500)
        self.assertEqual(bucket.rate, 500)
        self.assertEqual(self.registry.acquire(b"bob").rate, 500)
        self.registry.setRate(None)
        self.assertIsNone(bucket.rate)


class SessionBandwidthTests(SynchronousTestCase):
    """
    A session's throttles: its own buckets, and its user's shared ones.
    """

    def test_userSharesBuckets(self) -> None:
        """
        A session of a user takes from the user's shared buckets too, and
        gives them back when it stops: the registry forgets the user.
        """
        clock = Clock()
        perUser = (BucketRegistry(clock, 1000), BucketRegistry(clock, 1000))
        client, target = FakeReader(), FakeReader()
        bandwidth = SessionBandwidth(
            clock,
            ServerSettings(bandwidthPerSession=10_000, bandwidthPerUser=1000),
            PauseGate(client.pause, client.resume),
            PauseGate(target.pause, target.resume),
            b"alice",
            perUser,
        )
        self.assertEqual((len(perUser[0]), len(perUser[1])), (1, 1))
        # 2000 bytes up: within the session's cap, twice the user's.
        bandwidth.up.transferred(2000)
        self.assertFalse(client.reading)
        self.assertTrue(target.reading)
        bandwidth.stop()
        self.assertEqual((len(perUser[0]), len(perUser[1])), (0, 0))
