"""
Dante's SOCKS client library with GSSAPI against our server, C{twistd socks
--gssapi-keytab}, in the test realm of L{tests._kerberos}: Python programs
run with Dante's C{libdsocks} preloaded (what C{socksify} does) CONNECT to a
TCP echo server on loopback and exchange 1 MiB, and send datagrams to a UDP
echo server on loopback through a UDP association, at each protection level
(Dante's C{gssapi.enctype} C{clear}, C{integrity} and C{confidentiality};
RFC 1961 levels 0, 1 and 2).  Under protection Dante's client wraps the
stream in RFC 1961 MTYP 3 messages, and each UDP datagram, SOCKS UDP header
included, as one message (C{gssapi_encode_write_udp} and
C{gssapi_decode_read_udp} in its C{lib/gssapi.c}), as our server does.

Debian 12's dante-client 1.4.2 is built without GSSAPI; these tests preload
the C{libdsocks} that C{.ci/build-dante-gssapi} builds from Debian's source
with GSSAPI (L{requireGSSAPIDanteClient}): skipped without it, failed under
C{CI=true}.

How Dante's client is configured (C{socks.conf(5)}, and its parser,
C{lib/config_parse.y} and C{lib/config_scan.l}; the file is the one
C{SOCKS_CONF} names): a C{route} whose C{via} is our server, with
C{proxyprotocol: socks_v5}, C{method: gssapi} (inside a route the keyword
is C{method}; C{socksmethod} there is a syntax error),
C{gssapi.servicename} and C{gssapi.enctype}.  The client offers the
strongest level of its C{gssapi.enctype} and uses the level granted when
its C{gssapi.enctype} has it (our server grants the one asked for; for
another, see L{DanteClientIntegrityOnlyTests}).  It names the server
C{SERVICENAME@HOST}, a host-based name, with the host of C{via}: C{via:
localhost} gives C{rcmd@localhost}, which the realm's C{krb5.conf} (no
canonicalisation) makes C{rcmd/localhost@KRBTEST.COM}, a key of the
realm's keytab.  (With C{via: 127.0.0.1} the client would take the host
from a reverse lookup, C{getnameinfo(NI_NAMEREQD)}.)

Loopback targets: at start the library adds a direct route for the network
of every interface (C{socks_autoadd_directroute} in C{lib/config_parse.c}),
C{lo}'s 127.0.0.0/8 among them, and direct routes are looked up before
proxy routes, so without more a connection to 127.0.0.1 bypasses the proxy
(its data still arrives, and our server sees nothing).  The environment
variable C{SOCKS_AUTOADD_LANROUTES=no} turns that off; then the route's
C{to: 0.0.0.0/0} takes loopback destinations too.  (The only direct route
left is the one the library adds for the proxy itself: 127.0.0.1/32, the
server's port only.)  The tests check in the server's log that each
session went through it, under the realm user's principal, at the level.

Dante's client is not safe for two threads doing I/O on one GSSAPI socket
at once: with a thread reading while another writes 1 MiB, 1.4.2 aborted
in about half the runs at integrity and at confidentiality, never without
protection ("internal error ... interposition.c:552 ...
idsareequal(lib->dosyscall, removeid)", then SIGABRT), and before that can
write the same wrapped token twice (the reading thread's
C{socks_flushbuffer} flushes the C{gssapi_encode_write} of the writing
one), which our server refuses
("The token was a duplicate of an earlier token").  So the TCP program is
single-threaded: it sends a chunk and reads its echo before the next one.
Its sockets are blocking, too: the library does not interpose C{poll}, so
a Python socket timeout (which polls before reading) could wait on the
kernel while the data is already decoded in the library's buffer.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from typing import cast

from twisted.internet.interfaces import IReactorUDP
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from .._kerberos import KerberosRealm, requireKerberosRealm
from ..client._loopback import LOOPBACK, listenEcho, reactor
from ..client.test_udp import UDPEcho
from ._support import (
    ProcessResult,
    SOCKSServerProcess,
    runProcess,
    startSOCKSServer,
    testDirectory,
)
from ._thirdparty import requireGSSAPIDanteClient

#: The bytes the TCP program sends and gets back.
TCP_TOTAL = 1024 * 1024

#: Our server's names of the protection levels, by Dante's.
LEVELS = {
    "clear": "none",
    "integrity": "integrity",
    "confidentiality": "confidentiality",
}

#: The TCP program: connects to the echo server at argv[1] through the
#: preloaded library, sends TCP_TOTAL random bytes in chunks of several
#: sizes (some larger than one GSSAPI token), reading each chunk's echo
#: before sending the next, then half-closes and expects the echo server's
#: "[EOF]" and the end.  Prints the SHA-256 of what it sent.  SIGALRM ends
#: it if anything hangs.
_TCP_PROGRAM = r"""
import hashlib, os, signal, socket, sys

signal.alarm(90)
port, total = int(sys.argv[1]), int(sys.argv[2])
sizes = (1, 1500, 65536, 131072, 7)
sock = socket.create_connection(("127.0.0.1", port))
digest = hashlib.sha256()
sent = 0
for index in range(total):
    if sent >= total:
        break
    size = min(sizes[index % len(sizes)], total - sent)
    chunk = os.urandom(size)
    sock.sendall(chunk)
    answer = b""
    while len(answer) < size:
        data = sock.recv(size - len(answer))
        if not data:
            sys.exit(f"end of stream after {sent + len(answer)} of {total} octets")
        answer += data
    if answer != chunk:
        sys.exit(f"the echo of chunk {index} ({size} octets) differs")
    digest.update(chunk)
    sent += size
sock.shutdown(socket.SHUT_WR)
rest = b""
while data := sock.recv(100):
    rest += data
if rest != b"[EOF]":
    sys.exit(f"after the half-close: {rest!r}")
sock.close()
print(sent, digest.hexdigest())
"""

#: The UDP program: datagrams of several sizes to the echo server at argv[1]
#: (which answers in upper case) from an unconnected socket (sendto,
#: recvfrom), then from a connected one (send, recv); each is sent again
#: if no answer comes within two seconds, three times at most, and an
#: answer that is not the expected one (a late answer to an earlier try) is
#: skipped.  Prints how many datagrams were answered.
_UDP_PROGRAM = r"""
import os, signal, socket, sys, time

signal.alarm(90)
echo = ("127.0.0.1", int(sys.argv[1]))

def exchange(sock, payload, connected):
    for attempt in range(3):
        if connected:
            sock.send(payload)
        else:
            sock.sendto(payload, echo)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                if connected:
                    data, source = sock.recv(65535), echo
                else:
                    data, source = sock.recvfrom(65535)
            except socket.timeout:
                break
            if data == payload.upper() and source == echo:
                return
    sys.exit(f"no echo of {len(payload)} octets (connected: {connected})")

count = 0
unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
unconnected.settimeout(2)
for size in (1, 100, 1400, 8000, 30000):
    exchange(unconnected, os.urandom(size), False)
    count += 1
connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
connected.settimeout(2)
connected.connect(echo)
for size in (10, 5000):
    exchange(connected, os.urandom(size), True)
    count += 1
print(count)
"""

#: How many datagrams L{_UDP_PROGRAM} has answered.
UDP_DATAGRAMS = 7


def danteClientConfig(*, port: int, enctype: str, logPath: str) -> str:
    """
    Render the C{socks.conf} of Dante's client: every IPv4 destination
    through our server on C{localhost:port} with SOCKS5 and GSSAPI only.

    @param enctype: Dante's C{gssapi.enctype}: C{clear}, C{integrity} or
        C{confidentiality} (the client offers the strongest one given).
    @param logPath: Where the library logs (C{debug: 2} added here shows
        every message, with the first and last octets of each token).
    """
    return f"""\
logoutput: {logPath}
route {{
    from: 0.0.0.0/0 to: 0.0.0.0/0 via: localhost port = {port}
    proxyprotocol: socks_v5
    method: gssapi
    gssapi.servicename: rcmd
    gssapi.enctype: {enctype}
}}
"""


class _DanteClientTestCase(TestCase):
    """
    Dante's client, preloaded into Python programs, through our server with
    only the GSSAPI method: the helpers.
    """

    timeout = 180

    #: Options of C{twistd socks} besides the keytab.
    serverOptions: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.library = requireGSSAPIDanteClient()
        self.realm: KerberosRealm = requireKerberosRealm(self)
        self.socks: SOCKSServerProcess = startSOCKSServer(
            self, "--gssapi-keytab", self.realm.keytab, *self.serverOptions
        )
        self.directory = testDirectory(self)
        self.clientLog = os.path.join(self.directory, "dante-client.log")

    async def runClient(
        self, program: str, enctype: str, *args: str, lanRoutes: bool = False
    ) -> str:
        """
        Run C{program} in this Python, with Dante's library preloaded and
        configured for C{enctype}, in the realm's environment (the user's
        ticket cache), and assert that it succeeded.

        @param lanRoutes: Leave the library's direct routes for the local
            networks (without C{SOCKS_AUTOADD_LANROUTES=no}).

        @return: What it printed.
        """
        config = os.path.join(self.directory, "socks.conf")
        with open(config, "w") as f:
            f.write(
                danteClientConfig(
                    port=self.socks.port, enctype=enctype, logPath=self.clientLog
                )
            )
        env = self.realm.childEnvironment({"PATH": os.environ.get("PATH", "")})
        env.update({"LD_PRELOAD": self.library, "SOCKS_CONF": config})
        if not lanRoutes:
            env["SOCKS_AUTOADD_LANROUTES"] = "no"
        result = await runProcess(
            [sys.executable, "-I", "-c", program, *args], env=env, timeout=120
        )
        self.assertEqual(result.exitCode, 0, self.describe(result))
        return result.stdout.decode()

    def describe(self, result: ProcessResult) -> str:
        """
        The program's outcome with both logs, for a failure message.
        """
        try:
            with open(self.clientLog, "rb") as f:
                clientLog = f.read()[-8000:].decode("utf-8", "replace")
        except OSError as e:
            clientLog = f"<none: {e}>"
        return (
            f"{result.describe()}\n--- Dante's client log (end) ---\n{clientLog}"
            f"\n--- our server's log ---\n{self.socks.output()}"
        )

    async def assertLogged(self, pattern: str) -> re.Match[str]:
        """
        Wait (five seconds at most) until the server's log matches the
        regular expression C{pattern}.

        @return: The match.
        """
        for _ in range(100):
            match = re.search(pattern, self.socks.output())
            if match is not None:
                return match
            await deferLater(reactor, 0.05)
        self.fail(f"{pattern!r} not in the server's log:\n{self.socks.output()}")

    async def assertGranted(self, enctype: str, granted: str | None = None) -> str:
        """
        Assert that the server logged the realm user's principal asking for
        the level of C{enctype} and being granted it (or C{granted}).

        @return: Our server's name of the level granted.
        """
        level = LEVELS[enctype]
        granted = granted or level
        await self.assertLogged(
            re.escape(
                f"GSS-API principal {self.realm.userPrincipal} asked for "
                f"protection {level}, granted {granted}"
            )
        )
        return granted

    async def tcp(self, enctype: str, granted: str | None = None) -> None:
        """
        1 MiB to the echo server and back through our server, compared; the
        server's session summary names the level and the target.

        @param granted: The level the server grants, if not the one asked.
        """
        echo, echoPort = await listenEcho(self)
        output = await self.runClient(
            _TCP_PROGRAM, enctype, str(echoPort), str(TCP_TOTAL)
        )
        self.assertEqual(
            output.split(),
            [str(TCP_TOTAL), hashlib.sha256(echo.received).hexdigest()],
        )
        self.assertEqual(len(echo.received), TCP_TOTAL)
        with open(self.clientLog) as f:
            self.assertIn(
                f"have socks_v5 route (route #1) to 127.0.0.1.{echoPort} via "
                f"localhost.{self.socks.port}",
                f.read(),
            )
        level = await self.assertGranted(enctype, granted)
        await self.assertLogged(
            rf"user={re.escape(self.realm.userPrincipal)} gssapi={level} "
            rf"version=5 command=CONNECT target=127\.0\.0\.1:{echoPort} reply=0 "
            rf"outcome=success bytes_up={TCP_TOTAL} bytes_down={TCP_TOTAL + 5} "
        )

    async def udp(self, enctype: str) -> None:
        """
        Datagrams to the UDP echo server and back through our server's
        associations, compared; the server counted them.
        """
        udp = cast(IReactorUDP, reactor)
        echoPort = udp.listenUDP(0, UDPEcho(), LOOPBACK, 65535)
        self.addCleanup(echoPort.stopListening)
        port: int = echoPort.getHost().port  # type: ignore[attr-defined]
        output = await self.runClient(_UDP_PROGRAM, enctype, str(port))
        self.assertEqual(output.split(), [str(UDP_DATAGRAMS)])
        level = await self.assertGranted(enctype)
        # One association for each socket of the program.
        for _ in range(100):
            summaries = re.findall(
                rf"gssapi={level} version=5 command=UDP_ASSOCIATE .*outcome=success",
                self.socks.output(),
            )
            if len(summaries) == 2:
                break
            await deferLater(reactor, 0.05)
        self.assertEqual(len(summaries), 2, self.socks.output())
        counts = re.findall(
            r"from client (\d+) datagrams / \d+ bytes, to client (\d+) datagrams",
            self.socks.output(),
        )
        self.assertGreaterEqual(sum(int(up) for up, _ in counts), UDP_DATAGRAMS)
        self.assertGreaterEqual(sum(int(down) for _, down in counts), UDP_DATAGRAMS)


class DanteClientGSSAPITests(_DanteClientTestCase):
    """
    Dante's client through our server at each protection level.
    """

    async def test_tcpClear(self) -> None:
        """
        CONNECT at level 0 (Dante's C{clear}): the stream unwrapped.
        """
        await self.tcp("clear")

    async def test_tcpIntegrity(self) -> None:
        """
        CONNECT at level 1: the stream in integrity-protected messages.
        """
        await self.tcp("integrity")

    async def test_tcpConfidentiality(self) -> None:
        """
        CONNECT at level 2: the stream in encrypted messages.
        """
        await self.tcp("confidentiality")

    async def test_udpClear(self) -> None:
        """
        UDP ASSOCIATE at level 0: plain SOCKS UDP datagrams.
        """
        await self.udp("clear")

    async def test_udpIntegrity(self) -> None:
        """
        UDP ASSOCIATE at level 1: each datagram one integrity-protected
        message.
        """
        await self.udp("integrity")

    async def test_udpConfidentiality(self) -> None:
        """
        UDP ASSOCIATE at level 2: each datagram one encrypted message.
        """
        await self.udp("confidentiality")


class DanteClientLoopbackTests(_DanteClientTestCase):
    """
    Why the tests set C{SOCKS_AUTOADD_LANROUTES=no}.
    """

    async def test_loopbackDirectByDefault(self) -> None:
        """
        Without C{SOCKS_AUTOADD_LANROUTES=no} Dante's client reaches a
        loopback target directly, by the direct route it adds for C{lo}'s
        network, whatever the configured route says: the transfer succeeds
        and our server never hears of it.
        """
        echo, echoPort = await listenEcho(self)
        output = await self.runClient(
            _TCP_PROGRAM, "integrity", str(echoPort), "1000", lanRoutes=True
        )
        self.assertEqual(output.split()[0], "1000")
        self.assertEqual(len(echo.received), 1000)
        with open(self.clientLog) as f:
            clientLog = f.read()
        self.assertIn("searching for direct route for connect", clientLog)
        self.assertNotIn("have socks_v5 route", clientLog)
        await deferLater(reactor, 0.5)
        self.assertNotIn("GSS-API principal", self.socks.output())
        self.assertNotIn("command=CONNECT", self.socks.output())


class DanteClientIntegrityOnlyTests(_DanteClientTestCase):
    """
    A server that grants integrity only.
    """

    serverOptions = ("--gssapi-protection", "integrity")

    async def test_confidentialityAsked(self) -> None:
        """
        Dante's client configured for confidentiality only asks for it and
        is granted integrity.  Dante 1.4.2 neither gives up nor switches: a
        level granted that is not in its C{gssapi.enctype} leaves the level
        it offered in force (the C{switch (gss_server_enc)} at the end of
        C{clientmethod_gssapi} in C{lib/clientprotocol.c}), so it logs
        "using gssapi confidentiality protection" and goes on encrypting
        what it sends.  Our server, at integrity, takes encrypted messages
        too (only at confidentiality does it insist on encryption) and
        sends integrity-protected ones, which Dante's unwrap takes: the
        transfer goes through at the level the server granted.
        """
        await self.tcp("confidentiality", granted="integrity")


class DanteClientConfigTests(SynchronousTestCase):
    """
    L{danteClientConfig}.
    """

    def test_route(self) -> None:
        """
        One route, for every IPv4 destination, through C{localhost} (so the
        service name is C{rcmd@localhost}) with SOCKS5 and the GSSAPI method
        only, named C{method} as Dante's client parser wants in a route.
        """
        config = danteClientConfig(
            port=1080, enctype="integrity", logPath="/tmp/client.log"
        )
        self.assertIn("logoutput: /tmp/client.log\n", config)
        self.assertIn(
            "    from: 0.0.0.0/0 to: 0.0.0.0/0 via: localhost port = 1080\n", config
        )
        self.assertIn("    proxyprotocol: socks_v5\n", config)
        self.assertIn("    method: gssapi\n", config)
        self.assertNotIn("socksmethod", config)
        self.assertIn("    gssapi.servicename: rcmd\n", config)
        self.assertIn("    gssapi.enctype: integrity\n", config)
