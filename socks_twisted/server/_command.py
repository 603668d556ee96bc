"""
The interface between a session and the commands it serves.

A session reads and checks a request, then hands it to the command's
handler, which returns a
L{Deferred<twisted.internet.defer.Deferred>} of the outcome: the other side of a
relay (CONNECT, BIND), a UDP association, each with the address the
success reply names, or the answer to a lookup (Tor's RESOLVE and
RESOLVE_PTR).  A handler that cannot serve the request fails the
L{Deferred<twisted.internet.defer.Deferred>} with L{RefusedError}, naming the
reply code and the reason.  Cancelling the L{Deferred<twisted.internet.defer.Deferred>}
(the client left, the handshake deadline passed)
abandons the dial, closes the BIND listener or the UDP port.

Adding a command is adding a handler to L{socks_twisted.server._session}'s
table; nothing else in the session changes.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime

from .._gssstream import DatagramWrapper
from .._transport import StreamTransport
from .._wire import Command, SOCKS5ReplyCode
from ..policy import DENY_SELF, Decision, Policy
from ..policy import Request as PolicyRequest
from ._metrics import ServerMetrics
from ._own import OwnAddresses
from ._settings import Network, ServerSettings
from ._target import TargetProtocol
from ._udp import UDPAssociation


@dataclass(frozen=True)
class Request:
    """
    A request as every version says it.

    @ivar version: 4 or 5: the reply's format.
    """

    command: Command
    host: str
    port: int
    version: int


#: Why a destination that is one of the server's own sockets is refused.
OWN_ADDRESS_REASON = "the destination is this proxy's own listening address"


def deniedBy(decision: Decision, what: str) -> "RefusedError":
    """
    The refusal for something the rules deny, naming the rule.
    """
    rule = decision.rule.describe() if decision.rule is not None else "the rules"
    reason = f"{what} denied by {rule}"
    if decision.rule is DENY_SELF:
        reason += f": {OWN_ADDRESS_REASON}"
    return RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, reason, rule)


class RefusedError(Exception):
    """
    The request cannot be served: the session answers C{code} (SOCKS4 has
    one failure code for all) and logs C{reason}.

    @ivar rule: The rule that denied it, described, if the rules did.
    """

    def __init__(
        self, code: SOCKS5ReplyCode, reason: str, rule: str | None = None
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.rule = rule


@dataclass(frozen=True)
class Relayed:
    """
    CONNECT or BIND succeeded: relay between the client and C{target}.
    """

    target: TargetProtocol
    replyAddress: tuple[str, int]


@dataclass(frozen=True)
class Associated:
    """
    UDP ASSOCIATE succeeded: C{association} relays on C{port}.
    """

    association: UDPAssociation
    port: IListeningPort
    replyAddress: tuple[str, int]


@dataclass(frozen=True)
class Resolved:
    """
    RESOLVE or RESOLVE_PTR succeeded: the one reply names C{answer} (an
    address, or for RESOLVE_PTR a name) with port 0, and the session ends.
    """

    answer: str


Outcome = Relayed | Associated | Resolved


class CommandContext(Protocol):
    """
    What a command handler may know of and do to its session.
    """

    @property
    def reactor(self) -> IReactorTime:
        """The reactor, for timeouts."""

    @property
    def settings(self) -> ServerSettings:
        """The server's settings."""

    @property
    def network(self) -> Network:
        """How to dial, listen and resolve."""

    @property
    def ownAddresses(self) -> OwnAddresses:
        """The server's own listening addresses, never a destination."""

    @property
    def client(self) -> StreamTransport:
        """The client's connection."""

    @property
    def localAddress(self) -> IAddress:
        """
        The address of this server's own socket that the client reached:
        where BIND and UDP sockets are opened.
        """

    @property
    def sessionID(self) -> str:
        """The session's id, for log lines."""

    @property
    def metrics(self) -> ServerMetrics:
        """Where the server counts what it does."""

    @property
    def datagramProtection(self) -> DatagramWrapper | None:
        """
        How a UDP association's datagrams to and from the client are
        wrapped, if the session agreed a GSS-API protection level.
        """

    @property
    def policy(self) -> Policy:
        """The rules in force when the request was read."""

    @property
    def policyRequest(self) -> PolicyRequest:
        """The request as the rules see it."""

    @property
    def decision(self) -> Decision:
        """
        The rules' decision on the request: allowed, or undetermined until
        a name's addresses (or a datagram's destination) are known.
        """

    def announce(self, host: str, port: int) -> None:
        """
        Send an interim success reply naming C{(host, port)} (BIND's first).
        """

    def routed(self, via: str, bound: str | None = None) -> None:
        """
        Note, for the session log, that the request goes through the
        upstream proxy C{via} (its URL without credentials) and, once the
        upstream answered, the address its reply named (C{bound}).
        """


Handler = Callable[[Request, CommandContext], "defer.Deferred[Outcome]"]
