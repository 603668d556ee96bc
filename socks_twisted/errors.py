"""
Exceptions for SOCKS failures, shared by the server and the client.

The table between reply codes and exceptions lives here, both ways: the
client turns a failure reply into an exception (L{errorForSOCKS5Reply}), the
server turns the exception its outbound connection failed with into a reply
code (L{replyCodeFor}).

Every one is a L{twisted.internet.error.ConnectError}, so code that handles
connection failures generically keeps working through a proxy.  Where Twisted
has a matching error (refused, no route, timed out), the class is also an
instance of it.
"""

import errno

from twisted.internet import defer, error
from twisted.python.failure import Failure

from ._wire import SOCKS4ReplyCode, SOCKS5ReplyCode


class SOCKSError(error.ConnectError):
    """
    The root of every SOCKS failure.
    """

    def __init__(self, osError: object = None, string: str = "") -> None:
        # ConnectError.__init__ is unannotated; super() keeps the cooperative
        # __init__ of the subclasses that also derive from Twisted's errors.
        super().__init__(osError, string)  # type: ignore[no-untyped-call]


class SOCKSProtocolError(SOCKSError):
    """
    The proxy broke the protocol: a bad version, a malformed reply, a method
    that was not offered.
    """


class NoAcceptableMethodsError(SOCKSError):
    """
    The SOCKS5 proxy accepted none of the authentication methods offered.
    """


class AuthenticationFailedError(SOCKSError):
    """
    The proxy rejected the username and password (RFC 1929).
    """


class SOCKSReplyError(SOCKSError):
    """
    The proxy answered the request with a failure code.

    @cvar code: The reply code (SOCKS5 REP or SOCKS4 CD).
    """

    code: int = -1

    def __init__(self, osError: object = None, string: str = "") -> None:
        super().__init__(osError, string or self.describe())

    def describe(self) -> str:
        """
        Describe the failure in words, with its code.
        """
        doc = (type(self).__doc__ or "").strip().splitlines()[0]
        return f"{doc} (code {self.code:#04x})"


class GeneralServerFailureError(SOCKSReplyError):
    """
    General SOCKS server failure.
    """

    code = SOCKS5ReplyCode.GENERAL_FAILURE


class ConnectionNotAllowedError(SOCKSReplyError):
    """
    Connection not allowed by ruleset.
    """

    code = SOCKS5ReplyCode.NOT_ALLOWED


class NetworkUnreachableError(SOCKSReplyError, error.NoRouteError):
    """
    Network unreachable.
    """

    code = SOCKS5ReplyCode.NETWORK_UNREACHABLE


class HostUnreachableError(SOCKSReplyError, error.NoRouteError):
    """
    Host unreachable (or its name could not be resolved).
    """

    code = SOCKS5ReplyCode.HOST_UNREACHABLE


class ConnectionRefusedError(SOCKSReplyError, error.ConnectionRefusedError):
    """
    Connection refused.
    """

    code = SOCKS5ReplyCode.CONNECTION_REFUSED


class TTLExpiredError(SOCKSReplyError, error.TCPTimedOutError):
    """
    TTL expired (the proxy's connection attempt timed out).
    """

    code = SOCKS5ReplyCode.TTL_EXPIRED


class CommandNotSupportedError(SOCKSReplyError):
    """
    Command not supported.
    """

    code = SOCKS5ReplyCode.COMMAND_NOT_SUPPORTED


class AddressTypeNotSupportedError(SOCKSReplyError):
    """
    Address type not supported.
    """

    code = SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED


class UnknownReplyError(SOCKSReplyError):
    """
    The proxy answered with a reply code that no standard defines.
    """

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__()


class SOCKS4RejectedError(SOCKSReplyError):
    """
    Request rejected or failed.
    """

    code = SOCKS4ReplyCode.REJECTED


class SOCKS4IdentdUnreachableError(SOCKSReplyError):
    """
    Request rejected: the proxy could not reach the client's identd.
    """

    code = SOCKS4ReplyCode.NO_IDENTD


class SOCKS4IdentdMismatchError(SOCKSReplyError):
    """
    Request rejected: identd reported a different user ID.
    """

    code = SOCKS4ReplyCode.IDENTD_MISMATCH


_SOCKS5_ERRORS: dict[int, type[SOCKSReplyError]] = {
    cls.code: cls
    for cls in (
        GeneralServerFailureError,
        ConnectionNotAllowedError,
        NetworkUnreachableError,
        HostUnreachableError,
        ConnectionRefusedError,
        TTLExpiredError,
        CommandNotSupportedError,
        AddressTypeNotSupportedError,
    )
}

_SOCKS4_ERRORS: dict[int, type[SOCKSReplyError]] = {
    cls.code: cls
    for cls in (
        SOCKS4RejectedError,
        SOCKS4IdentdUnreachableError,
        SOCKS4IdentdMismatchError,
    )
}


def errorForSOCKS5Reply(code: int) -> SOCKSReplyError:
    """
    The exception for a failed SOCKS5 reply with REP C{code}.
    """
    cls = _SOCKS5_ERRORS.get(code)
    return cls() if cls is not None else UnknownReplyError(code)


def errorForSOCKS4Reply(code: int) -> SOCKSReplyError:
    """
    The exception for a failed SOCKS4 reply with CD C{code}.
    """
    cls = _SOCKS4_ERRORS.get(code)
    return cls() if cls is not None else UnknownReplyError(code)


_ERRNO_REPLIES = {
    errno.ECONNREFUSED: SOCKS5ReplyCode.CONNECTION_REFUSED,
    errno.EHOSTUNREACH: SOCKS5ReplyCode.HOST_UNREACHABLE,
    errno.EHOSTDOWN: SOCKS5ReplyCode.HOST_UNREACHABLE,
    errno.ENETUNREACH: SOCKS5ReplyCode.NETWORK_UNREACHABLE,
    errno.ENETDOWN: SOCKS5ReplyCode.NETWORK_UNREACHABLE,
    errno.ETIMEDOUT: SOCKS5ReplyCode.TTL_EXPIRED,
    errno.EACCES: SOCKS5ReplyCode.NOT_ALLOWED,
    errno.EPERM: SOCKS5ReplyCode.NOT_ALLOWED,
}


def replyCodeFor(failure: Failure | BaseException) -> SOCKS5ReplyCode:
    """
    The SOCKS5 reply code that names why reaching a target failed: the
    inverse of L{errorForSOCKS5Reply}, for Twisted's own connection errors,
    OS errors and our L{SOCKSReplyError}s alike.
    """
    value = failure.value if isinstance(failure, Failure) else failure
    if isinstance(value, SOCKSReplyError) and value.code in _SOCKS5_ERRORS:
        return SOCKS5ReplyCode(value.code)
    if isinstance(value, error.ConnectionRefusedError):
        return SOCKS5ReplyCode.CONNECTION_REFUSED
    if isinstance(value, (error.DNSLookupError, error.UnknownHostError)):
        return SOCKS5ReplyCode.HOST_UNREACHABLE
    if isinstance(
        value, (error.TimeoutError, error.TCPTimedOutError, defer.TimeoutError)
    ):
        return SOCKS5ReplyCode.TTL_EXPIRED
    osError = getattr(value, "osError", None)
    if isinstance(value, OSError):
        osError = value.errno
    if isinstance(osError, int) and osError in _ERRNO_REPLIES:
        return _ERRNO_REPLIES[osError]
    if isinstance(value, error.NoRouteError):
        return SOCKS5ReplyCode.NETWORK_UNREACHABLE
    return SOCKS5ReplyCode.GENERAL_FAILURE
