# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Our SOCKS5 client's GSSAPI method against Dante's C{danted} with
C{socksmethod: gssapi}, in the test realm of L{tests._kerberos}: CONNECT to
an echo server on loopback at each protection level Dante grants, with a
large transfer and a half-close.

Skipped with a danted built without GSSAPI, which Debian 12's dante-server
1.4.2 is: it refuses C{socksmethod: gssapi} at start ("Dante must be linked
with an external GSSAPI library at compiletime").
"""

from __future__ import annotations

import os
import shutil

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from socks_twisted._wire import ProtectionLevel
from socks_twisted.client import GSSAPIOptions, SOCKS5ClientEndpoint

from .._kerberos import KerberosRealm, requireKerberosRealm
from ..client._loopback import (
    LOOPBACK,
    ProxyTestCase,
    asyncTest,
    listenEcho,
    reactor,
    roundTrip,
    withTimeout,
)
from ._thirdparty import ThirdPartyServer, danteConfig, startDante

#: What danted logs when it was built without GSSAPI.
_NO_GSSAPI = "must be linked with an external GSSAPI library"


class DanteGSSAPITests(ProxyTestCase):
    """
    Our client through danted with GSSAPI.
    """

    timeout = 120

    #: Dante's gssapi.enctype.
    encryption = "clear integrity confidentiality"

    def setUp(self) -> None:
        self.realm: KerberosRealm = requireKerberosRealm(self)
        self.pool = ThreadPool(minthreads=1, maxthreads=2, name="dante-gssapi")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    def startDante(self) -> ThirdPartyServer:
        """
        danted with a copy of the realm's keytab it can read after dropping
        privileges.
        """
        keytab = os.path.join(self.mktemp() + "-keytab")
        shutil.copyfile(self.realm.keytab, keytab)
        os.chmod(keytab, 0o644)
        try:
            return startDante(
                self,
                commands=("connect",),
                gssapiKeytab=os.path.abspath(keytab),
                gssapiService=f"rcmd/localhost@{self.realm.realm}",
                gssapiEncryption=self.encryption,
            )
        except AssertionError as e:
            if _NO_GSSAPI in str(e):
                raise SkipTest(
                    "this danted was built without GSSAPI (Debian's dante-server"
                    " 1.4.2 is): it refuses socksmethod gssapi at start"
                ) from None
            raise

    async def transfer(self, level: ProtectionLevel, nec: bool = False) -> None:
        echo, echoPort = await listenEcho(self)
        dante = self.startDante()
        endpoint = SOCKS5ClientEndpoint(
            LOOPBACK,
            echoPort,
            TCP4ClientEndpoint(reactor, dante.host, dante.port),
            reactor=reactor,
            gssapi=GSSAPIOptions(
                host="localhost",
                protection=level,
                minimumProtection=level,
                nec=nec,
                threadpool=self.pool,
            ),
        )
        payload = os.urandom(4 * 1024 * 1024)
        client = await roundTrip(self, endpoint, payload)
        self.assertEqual(echo.received, payload)
        assert client.transport is not None
        client.transport.write(b"last")
        client.transport.loseWriteConnection()  # type: ignore[attr-defined]
        await withTimeout(client.lost, "the close")
        self.assertEqual(client.received[-len(b"last[EOF]") :], b"last[EOF]")

    @asyncTest
    async def test_none(self) -> None:
        """
        Level 0 ("clear").
        """
        await self.transfer(ProtectionLevel.NONE)

    @asyncTest
    async def test_integrity(self) -> None:
        """
        Level 1: wrapped both ways.
        """
        await self.transfer(ProtectionLevel.INTEGRITY)

    @asyncTest
    async def test_confidentiality(self) -> None:
        """
        Level 2: wrapped and encrypted both ways.
        """
        await self.transfer(ProtectionLevel.CONFIDENTIALITY)


class DanteConfigTests(SynchronousTestCase):
    """
    The GSSAPI part of L{danteConfig}.
    """

    def test_gssapi(self) -> None:
        """
        With a keytab the method is gssapi, with Dante's keytab, service
        name and enctype in the socks rule.
        """
        config = danteConfig(
            port=1080,
            logPath="/dev/null",
            auth=False,
            commands=("connect",),
            asRoot=False,
            gssapiKeytab="/k.keytab",
            gssapiService="rcmd/localhost@KRBTEST.COM",
            gssapiEncryption="clear",
        )
        self.assertIn("socksmethod: gssapi\n", config)
        self.assertIn("    gssapi.keytab: /k.keytab\n", config)
        self.assertIn("    gssapi.servicename: rcmd/localhost@KRBTEST.COM\n", config)
        self.assertIn("    gssapi.enctype: clear\n", config)
