"""
Tests for L{socks_twisted._gss}, the GSS-API context layer, against a real
KDC: the throwaway realm of L{tests._kerberos}.  An L{Initiator} and an
L{Acceptor} in this process exchange tokens as an RFC 1961 client and server
would, each step in a thread.
"""

from __future__ import annotations

import os
from typing import cast

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from socks_twisted._wire import (
    ProtectionLevel,
    ProtocolError,
    decodeProtectionLevel,
    encodeProtectionLevel,
)
from socks_twisted.auth import (
    GSSAPIPrincipal,
    GSSAPIPrincipalChecker,
    ISOCKSUser,
    SOCKSUser,
    portalFor,
)

from ._kerberos import KerberosRealm, requireKerberosRealm

reactor = cast(IReactorFromThreads, _globalReactor)

try:
    from socks_twisted._gss import (
        Acceptor,
        GSSAPIError,
        Initiator,
        acceptorCredentials,
        initiatorCredentials,
        serviceName,
    )
except ImportError:  # requireKerberosRealm skips, or fails under CI
    pass


class ContextTestCase(TestCase):
    """
    A realm, a small thread pool, and a way to run a whole establishment.
    """

    def setUp(self) -> None:
        self.realm: KerberosRealm = requireKerberosRealm(self)
        self.pool = ThreadPool(minthreads=1, maxthreads=2, name="gss-test")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    def acceptor(
        self, keytab: str | None = None, principal: str | None = None
    ) -> Acceptor:
        """
        An acceptor with the realm's service keytab (or C{keytab}).
        """
        credentials = acceptorCredentials(keytab or self.realm.keytab, principal)
        return Acceptor(credentials, reactor, self.pool)

    def initiator(self, service: str = "rcmd", host: str = "localhost") -> Initiator:
        """
        An initiator with the user's TGT, for C{service} on C{host}.
        """
        return Initiator(
            serviceName(service, host),
            reactor,
            self.pool,
            initiatorCredentials(self.realm.ccache),
        )

    async def establish(self, initiator: Initiator, acceptor: Acceptor) -> int:
        """
        Pass tokens back and forth until both sides are complete, as the
        MTYP 1 messages of RFC 1961 would carry them.

        @return: How many tokens went over.
        """
        count = 0
        token = await initiator.step(None)
        while True:
            assert token is not None
            count += 1
            reply = await acceptor.step(token)
            if reply is None:
                break
            count += 1
            token = await initiator.step(reply)
            if token is None:
                break
        self.assertTrue(initiator.complete)
        self.assertTrue(acceptor.complete)
        return count

    async def stepFails(self, stepping: Deferred[bytes | None]) -> GSSAPIError:
        """
        The L{GSSAPIError} a step fails with.
        """
        try:
            await stepping
        except GSSAPIError as e:
            return e
        raise self.failureException("the step did not fail")

    async def established(self) -> tuple[Initiator, Acceptor]:
        """
        A pair of established contexts.
        """
        initiator, acceptor = self.initiator(), self.acceptor()
        await self.establish(initiator, acceptor)
        return initiator, acceptor


class EstablishmentTests(ContextTestCase):
    """
    Context establishment with the real KDC.
    """

    async def test_localhost(self) -> None:
        """
        A client of C{rcmd@localhost} authenticates as the user to the
        acceptor of the keytab, mutually: two tokens (AP-REQ, AP-REP).
        """
        initiator, acceptor = self.initiator(), self.acceptor()
        self.assertEqual(await self.establish(initiator, acceptor), 2)
        self.assertEqual(acceptor.initiatorName, "user@KRBTEST.COM")
        self.assertEqual(acceptor.acceptorName, "rcmd/localhost@KRBTEST.COM")
        self.assertEqual(initiator.targetName, "rcmd/localhost@KRBTEST.COM")

    async def test_loginAsPrincipal(self) -> None:
        """
        The acceptor's initiator name, as L{GSSAPIPrincipal} credentials,
        logs in through the project's portal as the avatar of that principal
        when the checker's realm allows it, and is refused when not.
        """
        initiator, acceptor = self.initiator(), self.acceptor()
        await self.establish(initiator, acceptor)
        credentials = GSSAPIPrincipal(acceptor.initiatorName)
        allowed = portalFor([GSSAPIPrincipalChecker(realms=[self.realm.realm])])
        _, avatar, _ = await allowed.login(credentials, None, ISOCKSUser)
        assert isinstance(avatar, SOCKSUser)
        self.assertEqual(avatar.username, b"user@KRBTEST.COM")
        refused = portalFor([GSSAPIPrincipalChecker(principals=["admin@KRBTEST.COM"])])
        try:
            await refused.login(credentials, None, ISOCKSUser)
        except UnauthorizedLogin:
            pass
        else:
            self.fail("the principal was let in")

    async def test_loopbackAddress(self) -> None:
        """
        With canonicalisation off, C{rcmd@127.0.0.1} (what curl asks for
        with a proxy given as 127.0.0.1) is C{rcmd/127.0.0.1}.
        """
        initiator = self.initiator(host="127.0.0.1")
        acceptor = self.acceptor()
        await self.establish(initiator, acceptor)
        self.assertEqual(acceptor.acceptorName, "rcmd/127.0.0.1@KRBTEST.COM")
        self.assertEqual(acceptor.initiatorName, self.realm.userPrincipal)

    async def test_principalName(self) -> None:
        """
        A service with a C{/} is a whole principal name, as curl takes it.
        """
        initiator = Initiator(
            serviceName("rcmd/localhost@KRBTEST.COM", "ignored.example"),
            reactor,
            self.pool,
        )
        acceptor = self.acceptor()
        await self.establish(initiator, acceptor)
        self.assertEqual(acceptor.acceptorName, "rcmd/localhost@KRBTEST.COM")

    async def test_defaultCredentials(self) -> None:
        """
        Without explicit credentials the initiator uses the default cache
        (C{KRB5CCNAME}, which the realm set), and the acceptor the default
        keytab (C{KRB5_KTNAME}).
        """
        self.assertEqual(os.environ["KRB5CCNAME"], self.realm.env["KRB5CCNAME"])
        initiator = Initiator(serviceName("rcmd", "localhost"), reactor, self.pool)
        acceptor = Acceptor(acceptorCredentials(), reactor, self.pool)
        await self.establish(initiator, acceptor)
        self.assertEqual(acceptor.initiatorName, "user@KRBTEST.COM")

    async def test_restrictedAcceptor(self) -> None:
        """
        An acceptor for C{rcmd/localhost} only refuses a ticket for
        C{rcmd/127.0.0.1}, though the keytab has its key.
        """
        initiator = self.initiator(host="127.0.0.1")
        acceptor = self.acceptor(principal="rcmd/localhost@KRBTEST.COM")
        token = await initiator.step(None)
        assert token is not None
        error = await self.stepFails(acceptor.step(token))
        self.assertEqual(error.operation, "accepting a context token")
        self.assertNotEqual(error.major, 0)
        self.assertFalse(acceptor.complete)

    async def test_unknownService(self) -> None:
        """
        A service principal the KDC does not know fails the initiator's first
        step with the KDC's reason.
        """
        initiator = self.initiator(service="nosuch")
        error = await self.stepFails(initiator.step(None))
        self.assertIn("not found in Kerberos database", error.reason)
        self.assertIn("initiating the context", str(error))
        self.assertNotEqual(error.major, 0)
        self.assertNotEqual(error.minor, 0)

    async def test_serviceNotInKeytab(self) -> None:
        """
        A ticket for a service the KDC knows but whose key is not in the
        acceptor's keytab fails the acceptor's step.
        """
        initiator = self.initiator(service="other")
        token = await initiator.step(None)
        assert token is not None
        error = await self.stepFails(self.acceptor().step(token))
        self.assertIn("other/localhost", error.reason)

    async def test_garbageToken(self) -> None:
        """
        A context token that is not one fails the acceptor's step.
        """
        error = await self.stepFails(self.acceptor().step(b"\x60\x03garbage"))
        self.assertNotEqual(error.major, 0)

    async def test_emptyToken(self) -> None:
        """
        The acceptor needs a token.
        """
        await self.stepFails(self.acceptor().step(None))
        await self.stepFails(self.acceptor().step(b""))

    def test_missingKeytab(self) -> None:
        """
        A keytab that does not exist fails at once, not at the first client.
        """
        missing = os.path.join(self.realm.directory, "no-such-keytab")
        error = self.assertRaises(GSSAPIError, acceptorCredentials, missing)
        self.assertEqual(error.operation, "acquiring acceptor credentials")

    def test_emptyCache(self) -> None:
        """
        A credential cache with no credentials fails.
        """
        empty = "FILE:" + os.path.join(self.realm.directory, "no-such-ccache")
        self.assertRaises(GSSAPIError, initiatorCredentials, empty)
        self.assertIsNone(initiatorCredentials(None))

    async def test_oneStepAtATime(self) -> None:
        """
        A second step while one runs, or any step once complete, is a bug.
        """
        initiator, acceptor = self.initiator(), self.acceptor()
        first = initiator.step(None)
        self.assertRaises(RuntimeError, initiator.step, None)
        token = await first
        assert token is not None
        reply = await acceptor.step(token)
        self.assertRaises(RuntimeError, acceptor.step, b"more")
        self.assertIsNone(await initiator.step(reply))
        self.assertRaises(RuntimeError, initiator.step, b"more")

    def test_notEstablished(self) -> None:
        """
        Nothing is wrapped, and no name given, before establishment.
        """
        acceptor = self.acceptor()
        self.assertRaises(RuntimeError, lambda: acceptor.initiatorName)
        self.assertRaises(
            RuntimeError, acceptor.wrap, b"data", ProtectionLevel.INTEGRITY
        )
        self.assertRaises(
            RuntimeError, acceptor.wrapProtectionLevel, ProtectionLevel.INTEGRITY
        )


class ProtectionTests(ContextTestCase):
    """
    The protection-level subnegotiation and per-message protection of an
    established pair.
    """

    async def test_available(self) -> None:
        """
        A Kerberos context offers none, integrity and confidentiality.
        """
        initiator, acceptor = await self.established()
        expected = {
            ProtectionLevel.NONE,
            ProtectionLevel.INTEGRITY,
            ProtectionLevel.CONFIDENTIALITY,
        }
        self.assertEqual(acceptor.available(), expected)
        self.assertEqual(initiator.available(), expected)

    async def test_subnegotiation(self) -> None:
        """
        The client's wrapped level unwraps at the server and the server's
        answer at the client; a wrapped octet is not the bare one, and it is
        not encrypted (C{conf_req} false).
        """
        initiator, acceptor = await self.established()
        for level in ProtectionLevel:
            request = initiator.wrapProtectionLevel(level)
            self.assertGreater(len(request), 1)
            self.assertEqual(acceptor.unwrapProtectionLevel(request), (level, False))
            answer = acceptor.wrapProtectionLevel(level)
            self.assertEqual(initiator.unwrapProtectionLevel(answer), (level, False))

    async def test_necVariant(self) -> None:
        """
        The NEC variant's bare octet is read as it is, and flagged so that
        the answer goes bare too.
        """
        initiator, acceptor = await self.established()
        request = initiator.wrapProtectionLevel(ProtectionLevel.INTEGRITY, nec=True)
        self.assertEqual(request, b"\x01")
        level, nec = acceptor.unwrapProtectionLevel(request)
        self.assertEqual((level, nec), (ProtectionLevel.INTEGRITY, True))
        self.assertEqual(acceptor.wrapProtectionLevel(level, nec=nec), b"\x01")

    async def test_badProtectionToken(self) -> None:
        """
        A multi-octet token that does not unwrap is a L{GSSAPIError}; one
        that unwraps to something other than a level is a L{ProtocolError}.
        """
        initiator, acceptor = await self.established()
        self.assertRaises(
            GSSAPIError, acceptor.unwrapProtectionLevel, b"\x05\x04" + b"\x00" * 40
        )
        self.assertRaises(ProtocolError, acceptor.unwrapProtectionLevel, b"\x09")
        twoOctets = initiator._context.wrap(b"\x01\x02", False).message
        self.assertRaises(ProtocolError, acceptor.unwrapProtectionLevel, twoOctets)

    async def test_integrity(self) -> None:
        """
        At level 1 data is signed, not encrypted: it is in the token in the
        clear, and unwraps on the other side, both ways.
        """
        initiator, acceptor = await self.established()
        level = ProtectionLevel.INTEGRITY
        data = b"GET / HTTP/1.1\r\n\r\n"
        (token,) = initiator.wrap(data, level)
        self.assertIn(data, token)
        self.assertEqual(acceptor.unwrap(token, level), data)
        (back,) = acceptor.wrap(b"HTTP/1.1 200 OK\r\n", level)
        self.assertEqual(initiator.unwrap(back, level), b"HTTP/1.1 200 OK\r\n")

    async def test_confidentiality(self) -> None:
        """
        At level 2 data is encrypted: not in the token, and back whole.
        """
        initiator, acceptor = await self.established()
        level = ProtectionLevel.CONFIDENTIALITY
        data = b"secret payload " * 10
        (token,) = initiator.wrap(data, level)
        self.assertNotIn(b"secret payload", token)
        self.assertEqual(acceptor.unwrap(token, level), data)

    async def test_confidentialityRequired(self) -> None:
        """
        At level 2, a token wrapped without encryption is refused: no
        downgrade to integrity only.
        """
        initiator, acceptor = await self.established()
        (token,) = initiator.wrap(b"data", ProtectionLevel.INTEGRITY)
        error = self.assertRaises(
            GSSAPIError, acceptor.unwrap, token, ProtectionLevel.CONFIDENTIALITY
        )
        self.assertIn("without confidentiality", error.reason)

    async def test_largeData(self) -> None:
        """
        Data longer than one message holds is cut into tokens of at most
        65535 octets, which unwrap in order to the data.
        """
        initiator, acceptor = await self.established()
        data = os.urandom(200_000)
        for level in (ProtectionLevel.INTEGRITY, ProtectionLevel.CONFIDENTIALITY):
            limit = initiator.maxDataLength(level)
            self.assertTrue(60_000 < limit < 65535, limit)
            tokens = initiator.wrap(data, level)
            self.assertEqual(len(tokens), -(-len(data) // limit))
            self.assertTrue(all(len(token) <= 65535 for token in tokens))
            self.assertEqual(
                b"".join(acceptor.unwrap(token, level) for token in tokens), data
            )

    async def test_exactLimit(self) -> None:
        """
        Data of exactly the limit is one token of at most 65535 octets.
        """
        initiator, acceptor = await self.established()
        level = ProtectionLevel.CONFIDENTIALITY
        data = b"x" * initiator.maxDataLength(level)
        (token,) = initiator.wrap(data, level)
        self.assertLessEqual(len(token), 65535)
        self.assertEqual(acceptor.unwrap(token, level), data)

    async def test_emptyData(self) -> None:
        """
        Nothing to wrap, no token.
        """
        initiator, _ = await self.established()
        self.assertEqual(initiator.wrap(b"", ProtectionLevel.INTEGRITY), [])

    async def test_unwrappableLevels(self) -> None:
        """
        Level 0 wraps nothing and level 3 is not supported.
        """
        initiator, _ = await self.established()
        for level in (ProtectionLevel.NONE, ProtectionLevel.SELECTIVE):
            self.assertRaises(ValueError, initiator.wrap, b"data", level)

    async def test_tampered(self) -> None:
        """
        A token with one bit flipped does not unwrap.
        """
        initiator, acceptor = await self.established()
        for level in (ProtectionLevel.INTEGRITY, ProtectionLevel.CONFIDENTIALITY):
            (token,) = initiator.wrap(b"important", level)
            tampered = bytearray(token)
            tampered[-1] ^= 0x01
            error = self.assertRaises(
                GSSAPIError, acceptor.unwrap, bytes(tampered), level
            )
            self.assertEqual(error.operation, "unwrapping data")

    async def test_replayed(self) -> None:
        """
        The same token twice is refused the second time (replay detection).
        """
        initiator, acceptor = await self.established()
        level = ProtectionLevel.CONFIDENTIALITY
        (token,) = initiator.wrap(b"pay once", level)
        self.assertEqual(acceptor.unwrap(token, level), b"pay once")
        self.assertRaises(GSSAPIError, acceptor.unwrap, token, level)

    async def test_reordered(self) -> None:
        """
        Tokens out of order are refused (sequence detection): a stream must
        not be rearranged.
        """
        initiator, acceptor = await self.established()
        level = ProtectionLevel.INTEGRITY
        initiator.wrap(b"one", level)
        (second,) = initiator.wrap(b"two", level)
        self.assertRaises(GSSAPIError, acceptor.unwrap, second, level)

    async def test_otherContext(self) -> None:
        """
        A token of another context does not unwrap.
        """
        initiator, _ = await self.established()
        _, otherAcceptor = await self.established()
        (token,) = initiator.wrap(b"data", ProtectionLevel.INTEGRITY)
        self.assertRaises(
            GSSAPIError, otherAcceptor.unwrap, token, ProtectionLevel.INTEGRITY
        )

    async def test_levelOctets(self) -> None:
        """
        What the acceptor unwraps is exactly the codec's octet.
        """
        initiator, acceptor = await self.established()
        token = initiator.wrapProtectionLevel(ProtectionLevel.CONFIDENTIALITY)
        octets = acceptor._context.unwrap(token).message
        self.assertEqual(octets, encodeProtectionLevel(ProtectionLevel.CONFIDENTIALITY))
        self.assertIs(decodeProtectionLevel(octets), ProtectionLevel.CONFIDENTIALITY)
