"""
Bandwidth caps on a relayed session: a token bucket of its own each way,
and the one its user shares with the user's other sessions.
"""

from twisted.internet.interfaces import IReactorTime

from .._bandwidth import THROTTLE, BucketRegistry, PauseGate, Throttle, TokenBucket
from ._settings import ServerSettings


def _throttle(
    reactor: IReactorTime, buckets: list[TokenBucket], gate: PauseGate
) -> Throttle:
    return Throttle(
        reactor, buckets, lambda: gate.pause(THROTTLE), lambda: gate.resume(THROTTLE)
    )


class SessionBandwidth:
    """
    The throttles of one relayed session.

    @ivar up: Throttles the client's reading (client to target).
    @ivar down: Throttles the target's reading (target to client).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        settings: ServerSettings,
        clientGate: PauseGate,
        targetGate: PauseGate,
        user: bytes | None,
        perUser: tuple[BucketRegistry, BucketRegistry],
    ) -> None:
        """
        @param clientGate: Pauses reading from the client (see
            L{socks_twisted.relay.Relay.gate}).
        @param targetGate: Pauses reading from the target.
        @param user: The session's user: its buckets are shared with the
            user's other sessions.
        @param perUser: The shared buckets, up and down.
        """
        self._own = (
            TokenBucket(reactor, settings.bandwidthPerSession),
            TokenBucket(reactor, settings.bandwidthPerSession),
        )
        up, down = [self._own[0]], [self._own[1]]
        self._user = user
        self._perUser = perUser
        if user is not None:
            up.append(perUser[0].acquire(user))
            down.append(perUser[1].acquire(user))
        self.up = _throttle(reactor, up, clientGate)
        self.down = _throttle(reactor, down, targetGate)

    @staticmethod
    def wanted(settings: ServerSettings, user: bytes | None) -> bool:
        """
        Whether C{settings} cap a session of C{user} at all: if not, it is
        not throttled, and its relay pays nothing for it.
        """
        perUser = settings.bandwidthPerUser if user is not None else None
        return settings.bandwidthPerSession is not None or perUser is not None

    def reconfigure(self, settings: ServerSettings) -> None:
        """
        Follow new settings (a reload); the shared buckets follow their
        registry's rate.
        """
        for bucket in self._own:
            bucket.setRate(settings.bandwidthPerSession)

    def stop(self) -> None:
        """
        The session ended: no more pauses, and the user's buckets released.
        """
        self.up.stop()
        self.down.stop()
        if self._user is not None:
            for registry in self._perUser:
                registry.release(self._user)
