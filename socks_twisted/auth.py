"""
twisted.cred glue: the avatar a SOCKS session logs in as, its realm, and a
portal built from the checkers that C{--auth} configured; and for the GSSAPI
method (RFC 1961), the credentials of a Kerberos principal that GSS-API
authenticated and the checker that decides which principals may use the
proxy.
"""

from collections.abc import Callable, Iterable
from typing import Any

from twisted.cred.checkers import (
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import Attribute, Interface, implementer


class ISOCKSUser(Interface):
    """
    Someone who passed RFC 1929 authentication.
    """

    username = Attribute("The avatar ID the checker returned, as bytes.")


@implementer(ISOCKSUser)
class SOCKSUser:
    """
    The avatar of an authenticated SOCKS client.
    """

    def __init__(self, username: bytes) -> None:
        self.username = username

    def __repr__(self) -> str:
        return f"SOCKSUser({self.username!r})"


@implementer(IRealm)
class SOCKSRealm:
    """
    Gives every authenticated client a L{SOCKSUser} named by its avatar ID.
    """

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, SOCKSUser, Callable[[], None]]:
        if ISOCKSUser not in interfaces:
            raise NotImplementedError("SOCKSRealm only provides ISOCKSUser")
        username = avatarId if isinstance(avatarId, bytes) else b""
        return ISOCKSUser, SOCKSUser(username), lambda: None


def _bytesUsers(checker: InMemoryUsernamePasswordDatabaseDontUse) -> None:
    """
    Twisted's C{memory:} strcred plugin stores the usernames and passwords it
    parses as C{str}, while credentials from the wire are C{bytes} (as
    L{IUsernamePassword<twisted.cred.credentials.IUsernamePassword>} says).
    Store them as bytes so that they can match.
    """
    checker.users = {
        (name.encode("utf-8") if isinstance(name, str) else name): (
            password.encode("utf-8") if isinstance(password, str) else password
        )
        for name, password in checker.users.items()
    }


def portalFor(checkers: Iterable[ICredentialsChecker]) -> Portal:
    """
    Build the portal a SOCKS server checks RFC 1929 credentials against.
    """
    checkers = list(checkers)
    for checker in checkers:
        if isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
            _bytesUsers(checker)
    return Portal(SOCKSRealm(), checkers)


class IGSSAPIPrincipal(Interface):
    """
    A Kerberos principal that a GSS-API security context authenticated: the
    initiator name of an established acceptor context.  (Credentials in the
    sense of L{twisted.cred}: L{GSSAPIPrincipal} also provides
    L{ICredentials<twisted.cred.credentials.ICredentials>}.)

    Nothing about it is secret or to be verified: only the GSS-API layer
    may make one, once the context is established, and a checker only
    decides whether that principal may use the proxy.
    """

    principal = Attribute(
        "The principal's display name, C{str}, such as C{'alice@EXAMPLE.COM'}"
        " or C{'host/db.example.com@EXAMPLE.COM'}."
    )


@implementer(IGSSAPIPrincipal, ICredentials)
class GSSAPIPrincipal:
    """
    The credentials of a principal GSS-API authenticated.
    """

    def __init__(self, principal: str) -> None:
        self.principal = principal

    def __repr__(self) -> str:
        return f"GSSAPIPrincipal({self.principal!r})"


def splitPrincipal(principal: str) -> tuple[str, str]:
    """
    Split a Kerberos principal's display name at the C{@} that starts its
    realm: the last one not escaped with a backslash.

    @return: C{(name, realm)}; the realm is C{""} when there is none.
    """
    index = len(principal) - 1
    while index >= 0:
        if principal[index] == "@":
            backslashes = 0
            before = index - 1
            while before >= 0 and principal[before] == "\\":
                backslashes += 1
                before -= 1
            if backslashes % 2 == 0:
                return principal[:index], principal[index + 1 :]
        index -= 1
    return principal, ""


@implementer(ICredentialsChecker)
class GSSAPIPrincipalChecker:
    """
    Maps a GSS-API authenticated principal to an avatar ID, the principal's
    whole name in UTF-8 (C{b"alice@EXAMPLE.COM"}), if the allow-lists let it
    in.

    With no allow-list every authenticated principal is let in.  Otherwise
    a principal is let in if its whole name is in C{principals} or its realm
    is in C{realms}; names and realms are compared exactly (Kerberos names
    are case-sensitive).
    """

    credentialInterfaces = (IGSSAPIPrincipal,)

    def __init__(
        self, principals: Iterable[str] = (), realms: Iterable[str] = ()
    ) -> None:
        """
        @param principals: Whole principal names, such as
            C{"alice@EXAMPLE.COM"}.
        @param realms: Realms all of whose principals are let in, such as
            C{"EXAMPLE.COM"}.
        """
        self.principals = frozenset(principals)
        self.realms = frozenset(realms)

    def allows(self, principal: str) -> bool:
        """
        Whether C{principal} may use the proxy.
        """
        if not self.principals and not self.realms:
            return True
        if principal in self.principals:
            return True
        _, realm = splitPrincipal(principal)
        return bool(realm) and realm in self.realms

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """
        The principal's avatar ID, or an L{UnauthorizedLogin} failure if it
        is not allowed (or not a GSS-API principal at all).
        """
        principal = getattr(credentials, "principal", None)
        if not IGSSAPIPrincipal.providedBy(credentials) or not isinstance(
            principal, str
        ):
            return fail(UnauthorizedLogin("not a GSS-API principal"))
        if not self.allows(principal):
            return fail(UnauthorizedLogin(f"principal {principal} not allowed"))
        return succeed(principal.encode("utf-8"))
