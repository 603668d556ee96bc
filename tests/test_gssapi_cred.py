"""
Tests for the GSSAPI pieces of L{socks_twisted.auth}: the credentials of a
GSS-API authenticated principal, and the checker that maps it to an avatar
ID under an allow-list of principals and realms.
"""

from __future__ import annotations

from twisted.cred.credentials import ICredentials, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from socks_twisted.auth import (
    GSSAPIPrincipal,
    GSSAPIPrincipalChecker,
    IGSSAPIPrincipal,
    ISOCKSUser,
    SOCKSUser,
    portalFor,
    splitPrincipal,
)


class SplitPrincipalTests(SynchronousTestCase):
    """
    L{splitPrincipal} finds the realm after the last unescaped C{@}.
    """

    def test_plain(self) -> None:
        self.assertEqual(splitPrincipal("alice@EXAMPLE.COM"), ("alice", "EXAMPLE.COM"))

    def test_service(self) -> None:
        self.assertEqual(
            splitPrincipal("host/db.example.com@EXAMPLE.COM"),
            ("host/db.example.com", "EXAMPLE.COM"),
        )

    def test_noRealm(self) -> None:
        self.assertEqual(splitPrincipal("alice"), ("alice", ""))

    def test_escapedAt(self) -> None:
        """
        C{\\@} is part of the name (an enterprise name), not the realm's
        start; C{\\\\@} is an escaped backslash, then the realm.
        """
        self.assertEqual(
            splitPrincipal("alice\\@corp.example@EXAMPLE.COM"),
            ("alice\\@corp.example", "EXAMPLE.COM"),
        )
        self.assertEqual(splitPrincipal("alice\\@corp"), ("alice\\@corp", ""))
        self.assertEqual(splitPrincipal("a\\\\@R"), ("a\\\\", "R"))


class CheckerTests(SynchronousTestCase):
    """
    L{GSSAPIPrincipalChecker}.
    """

    def avatarId(self, checker: GSSAPIPrincipalChecker, principal: str) -> object:
        """
        The avatar ID the checker gives C{principal}, or the failure's type.
        """
        result = self.successResultOf(
            checker.requestAvatarId(GSSAPIPrincipal(principal)).addErrback(
                lambda failure: failure.type
            )
        )
        return result

    def test_interfaces(self) -> None:
        credentials = GSSAPIPrincipal("alice@EXAMPLE.COM")
        self.assertTrue(verifyObject(IGSSAPIPrincipal, credentials))
        self.assertTrue(ICredentials.providedBy(credentials))
        self.assertEqual(repr(credentials), "GSSAPIPrincipal('alice@EXAMPLE.COM')")
        self.assertEqual(
            GSSAPIPrincipalChecker.credentialInterfaces, (IGSSAPIPrincipal,)
        )

    def test_everyone(self) -> None:
        """
        With no allow-list every authenticated principal is in, as its whole
        name in UTF-8.
        """
        checker = GSSAPIPrincipalChecker()
        self.assertEqual(
            self.avatarId(checker, "alice@EXAMPLE.COM"), b"alice@EXAMPLE.COM"
        )
        self.assertEqual(
            self.avatarId(checker, "zoë@ÉXAMPLE.COM"), "zoë@ÉXAMPLE.COM".encode()
        )

    def test_principals(self) -> None:
        checker = GSSAPIPrincipalChecker(principals=["alice@EXAMPLE.COM"])
        self.assertEqual(
            self.avatarId(checker, "alice@EXAMPLE.COM"), b"alice@EXAMPLE.COM"
        )
        for other in (
            "bob@EXAMPLE.COM",
            "alice@OTHER.COM",
            "ALICE@EXAMPLE.COM",
            "alice",
        ):
            self.assertIs(self.avatarId(checker, other), UnauthorizedLogin, other)

    def test_realms(self) -> None:
        checker = GSSAPIPrincipalChecker(realms=["EXAMPLE.COM"])
        self.assertEqual(self.avatarId(checker, "bob@EXAMPLE.COM"), b"bob@EXAMPLE.COM")
        self.assertEqual(
            self.avatarId(checker, "host/a.example.com@EXAMPLE.COM"),
            b"host/a.example.com@EXAMPLE.COM",
        )
        for other in ("bob@SUB.EXAMPLE.COM", "bob@example.com", "bob", "EXAMPLE.COM"):
            self.assertIs(self.avatarId(checker, other), UnauthorizedLogin, other)

    def test_escapedRealm(self) -> None:
        """
        An escaped C{@} does not start a realm: C{x\\@EXAMPLE.COM} has none.
        """
        checker = GSSAPIPrincipalChecker(realms=["EXAMPLE.COM"])
        self.assertIs(self.avatarId(checker, "x\\@EXAMPLE.COM"), UnauthorizedLogin)

    def test_both(self) -> None:
        checker = GSSAPIPrincipalChecker(
            principals=["carol@PARTNER.ORG"], realms=["EXAMPLE.COM"]
        )
        self.assertEqual(
            self.avatarId(checker, "carol@PARTNER.ORG"), b"carol@PARTNER.ORG"
        )
        self.assertEqual(
            self.avatarId(checker, "dave@EXAMPLE.COM"), b"dave@EXAMPLE.COM"
        )
        self.assertIs(self.avatarId(checker, "dave@PARTNER.ORG"), UnauthorizedLogin)
        self.assertTrue(checker.allows("carol@PARTNER.ORG"))
        self.assertFalse(checker.allows("eve@EVIL.ORG"))

    def test_otherCredentials(self) -> None:
        """
        Username and password credentials are not a GSS-API principal.
        """
        failure = self.failureResultOf(
            GSSAPIPrincipalChecker().requestAvatarId(UsernamePassword(b"a", b"b")),
            UnauthorizedLogin,
        )
        self.assertIn("not a GSS-API principal", str(failure.value))

    def test_portal(self) -> None:
        """
        Through the project's portal the principal logs in as a L{SOCKSUser}
        named by it; a principal not allowed is refused.
        """
        portal = portalFor([GSSAPIPrincipalChecker(realms=["KRBTEST.COM"])])
        interface, avatar, logout = self.successResultOf(
            portal.login(GSSAPIPrincipal("user@KRBTEST.COM"), None, ISOCKSUser)
        )
        self.assertIs(interface, ISOCKSUser)
        assert isinstance(avatar, SOCKSUser)
        self.assertEqual(avatar.username, b"user@KRBTEST.COM")
        logout()
        self.failureResultOf(
            portal.login(GSSAPIPrincipal("user@ELSEWHERE"), None, ISOCKSUser),
            UnauthorizedLogin,
        )
