"""
BIND: a listening socket for one session that accepts exactly one peer.
"""

from typing import TYPE_CHECKING

from twisted.internet import defer, error
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import Factory

from ._outbound import TargetProtocol, hostAndPort

if TYPE_CHECKING:
    from ._session import SOCKSServerProtocol


class UnexpectedPeerError(error.ConnectError):
    """
    The connection to a BIND listener came from an address other than the
    one the request named.
    """


class _AcceptedProtocol(TargetProtocol):
    def __init__(self, session: "SOCKSServerProtocol", accepted: "BindFactory") -> None:
        super().__init__(session)
        self._accepted = accepted

    def connectionMade(self) -> None:
        self._accepted.accepted(self)


class BindFactory(Factory):
    """
    Accepts the first connection to a BIND listener, and only it.

    @ivar peer: Fires with the L{TargetProtocol} of the accepted connection,
        or fails with L{UnexpectedPeerError}.  Cancelling it, or its firing,
        closes the listener.
    """

    noisy = False

    def __init__(
        self, session: "SOCKSServerProtocol", expected: frozenset[str] | None
    ) -> None:
        self._session = session
        self._expected = expected
        self._done = False
        self.listener: IListeningPort | None = None
        self.peer: defer.Deferred[TargetProtocol] = defer.Deferred(
            lambda d: self._stopListening()
        )

    def _stopListening(self) -> None:
        self._done = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.stopListening()

    def buildProtocol(self, addr: IAddress | None) -> TargetProtocol | None:
        if self._done:
            return None
        self._stopListening()
        host, port = hostAndPort(addr) if addr is not None else ("?", 0)
        if self._expected is not None and host not in self._expected:
            expected = ", ".join(sorted(self._expected))
            self.peer.errback(
                UnexpectedPeerError(  # type: ignore[no-untyped-call]
                    string=f"connection from {host}:{port}, expected from {expected}"
                )
            )
            return None
        return _AcceptedProtocol(self._session, self)

    def accepted(self, protocol: TargetProtocol) -> None:
        """
        The one accepted connection is made.
        """
        self.peer.callback(protocol)
