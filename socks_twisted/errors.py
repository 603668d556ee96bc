"""
Exceptions for SOCKS failures, shared by the server and the client.

Every one is a L{twisted.internet.error.ConnectError}, so code that handles
connection failures generically keeps working through a proxy.  Where Twisted
has a matching error (refused, no route, timed out), the class is also an
instance of it.
"""

from twisted.internet import error

from ._wire import SOCKS4ReplyCode, SOCKS5ReplyCode


class SOCKSError(error.ConnectError):
    """
    The root of every SOCKS failure.
    """

    def __init__(self, osError: object = None, string: str = "") -> None:
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
