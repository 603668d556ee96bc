# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Our SOCKS5 client's GSSAPI method against Dante's C{danted} with
C{socksmethod: gssapi}, in the test realm of L{tests._kerberos}: CONNECT to
an echo server on loopback at each protection level Dante grants, with a
large transfer and a half-close; UDP ASSOCIATE at each level (Dante wraps
each datagram, SOCKS UDP header included, as one MTYP 3 message, as we do:
C{gssapi_encode_write_udp} and C{gssapi_decode_read_udp} in its
C{lib/gssapi.c}); and BIND under confidentiality.

Debian 12's dante-server 1.4.2 is built without GSSAPI: it refuses
C{socksmethod: gssapi} at start ("Dante must be linked with an external
GSSAPI library at compiletime").  These tests run the danted that
C{.ci/build-dante-gssapi} builds from Debian's source with GSSAPI
(L{requireGSSAPIDante}): skipped without it, failed under C{CI=true}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import cast

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorUDP
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import ProtectionLevel
from socks_twisted.client import GSSAPIOptions, SOCKS5ClientEndpoint, SOCKSProxy

from .._kerberos import KerberosRealm, requireKerberosRealm
from ..client._loopback import (
    LOOPBACK,
    ProxyTestCase,
    asyncTest,
    exchangeThroughBind,
    listenEcho,
    reactor,
    roundTrip,
    withTimeout,
)
from ..client.test_udp import Receiver, UDPEcho, echoed
from ._thirdparty import (
    ThirdPartyServer,
    danteConfig,
    requireGSSAPIDante,
    startDante,
)


class DanteGSSAPITests(ProxyTestCase):
    """
    Our client through danted with GSSAPI.
    """

    timeout = 120

    #: Dante's gssapi.enctype.
    encryption = "clear integrity confidentiality"

    def setUp(self) -> None:
        self.danted = requireGSSAPIDante()
        self.realm: KerberosRealm = requireKerberosRealm(self)
        self.pool = ThreadPool(minthreads=1, maxthreads=2, name="dante-gssapi")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    def startDante(
        self, nec: bool = False, commands: tuple[str, ...] = ("connect",)
    ) -> ThirdPartyServer:
        """
        danted with copies of the realm's keytab and C{krb5.conf}.

        Its negotiation child runs as C{nobody} except around
        C{gss_acquire_cred} and C{gss_accept_sec_context}; the realm's
        directory (k5test's C{mkdtemp}) is root's alone, so a
        C{KRB5_CONFIG} there makes the unprivileged C{gss_display_name} of
        the client's name fail with "Permission denied".  The copies are
        world-readable, in a directory of their own under the system's
        temporary directory, which C{nobody} can enter: trial's C{mktemp}
        makes its parent with mode 0700, and CI runs the tests again inside
        an sdist unpacked in a C{mkdtemp} (mode 0700 too).

        @param nec: Whether danted also takes the NEC-style, unwrapped
            protection level message (C{clientcompatibility: necgssapi}).
        @param commands: The SOCKS commands danted allows.
        """
        # Not under trial's temporary directory: it, or a directory above
        # it (an unpacked sdist in a mkdtemp), may be closed to others.
        directory = tempfile.mkdtemp(prefix="dante-gssapi-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        os.chmod(directory, 0o755)
        keytab = os.path.join(directory, "keytab")
        shutil.copyfile(self.realm.keytab, keytab)
        os.chmod(keytab, 0o644)
        krb5Conf = os.path.join(directory, "krb5.conf")
        shutil.copyfile(self.realm.env["KRB5_CONFIG"], krb5Conf)
        os.chmod(krb5Conf, 0o644)
        return startDante(
            self,
            commands=commands,
            gssapiKeytab=keytab,
            gssapiService=f"rcmd/localhost@{self.realm.realm}",
            gssapiEncryption=self.encryption,
            gssapiNEC=nec,
            executable=self.danted,
            env=self.realm.childEnvironment() | {"KRB5_CONFIG": krb5Conf},
        )

    def proxy(self, dante: ThirdPartyServer, level: ProtectionLevel) -> SOCKSProxy:
        """
        Our client's proxy object for C{dante}, asking for C{level} and
        accepting no less.
        """
        return SOCKSProxy(
            reactor,
            TCP4ClientEndpoint(reactor, dante.host, dante.port),
            gssapi=GSSAPIOptions(
                host="localhost",
                protection=level,
                minimumProtection=level,
                threadpool=self.pool,
            ),
        )

    async def udp(self, level: ProtectionLevel) -> None:
        """
        Datagrams of several sizes to a UDP echo server through danted's
        association, each sent again if lost (UDP), at most three times.
        """
        udp = cast(IReactorUDP, reactor)
        echoPort = udp.listenUDP(0, UDPEcho(), LOOPBACK, 65535)
        self.addCleanup(echoPort.stopListening)
        echo = (LOOPBACK, echoPort.getHost().port)  # type: ignore[attr-defined]
        dante = self.startDante(commands=("connect", "udpassociate"))
        receiver = Receiver()
        association = await withTimeout(
            self.proxy(dante, level).udp(receiver), "the association"
        )
        self.addCleanup(association.stopListening)
        self.assertEqual(
            association.controlTransport.datagramProtection is None,
            level is ProtectionLevel.NONE,
        )
        for payload in (b"datagram", os.urandom(8000)):
            answer = await echoed(association, receiver, payload, echo)
            self.assertEqual(answer, (payload.upper(), echo))
        self.assertEqual(dict(association.drops), {})

    @asyncTest
    async def test_udpNone(self) -> None:
        """
        UDP at level 0: plain datagrams.
        """
        await self.udp(ProtectionLevel.NONE)

    @asyncTest
    async def test_udpIntegrity(self) -> None:
        """
        UDP at level 1: each datagram one integrity-protected message.
        """
        await self.udp(ProtectionLevel.INTEGRITY)

    @asyncTest
    async def test_udpConfidentiality(self) -> None:
        """
        UDP at level 2: each datagram one encrypted message.
        """
        await self.udp(ProtectionLevel.CONFIDENTIALITY)

    @asyncTest
    async def test_bindConfidentiality(self) -> None:
        """
        BIND at level 2: both replies and the relayed bytes wrapped.
        """
        dante = self.startDante(commands=("connect", "bind"))
        proxy = self.proxy(dante, ProtectionLevel.CONFIDENTIALITY)
        await exchangeThroughBind(self, proxy.bind)

    async def transfer(self, level: ProtectionLevel, nec: bool = False) -> None:
        echo, echoPort = await listenEcho(self)
        dante = self.startDante(nec=nec)
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

    @asyncTest
    async def test_nec(self) -> None:
        """
        Level 2, the protection level message exchanged unwrapped (NEC's
        way, C{nec=True}) with a danted configured for NEC clients.
        """
        await self.transfer(ProtectionLevel.CONFIDENTIALITY, nec=True)


class DanteConfigTests(SynchronousTestCase):
    """
    The GSSAPI part of L{danteConfig}.
    """

    def test_gssapi(self) -> None:
        """
        With a keytab the method is gssapi, with Dante's keytab, service
        name and enctype in the client rule, where Dante 1.4 reads them.
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
        clientRule = config[
            config.index("client pass {") : config.index("socks pass {")
        ]
        self.assertIn("gssapi.keytab", clientRule)
        self.assertNotIn("gssapi.", config[config.index("socks pass {") :])
        self.assertNotIn("clientcompatibility", config)

    def test_nec(self) -> None:
        """
        C{gssapiNEC} adds C{clientcompatibility: necgssapi} to the client
        rule.
        """
        config = danteConfig(
            port=1080,
            logPath="/dev/null",
            auth=False,
            commands=("connect",),
            asRoot=False,
            gssapiKeytab="/k.keytab",
            gssapiNEC=True,
        )
        clientRule = config[
            config.index("client pass {") : config.index("socks pass {")
        ]
        self.assertIn("    clientcompatibility: necgssapi\n", clientRule)
