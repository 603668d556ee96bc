"""
twisted.cred glue: the avatar a SOCKS session logs in as, its realm, and a
portal built from the checkers that C{--auth} configured.
"""

from collections.abc import Callable, Iterable
from typing import Any

from twisted.cred.checkers import (
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.portal import IRealm, Portal
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
