"""
Interoperability with curl's GSS-API client (C{--socks5-gssapi} and the NEC
variant, C{--socks5-gssapi-nec}): curl, with a ticket of the test realm of
L{tests._kerberos}, fetches a file from an HTTP server on loopback through
C{twistd socks --gssapi-keytab}.

curl implements no per-message protection and goes on only if the server
answers "no protection" (level 0).  What it asks for depends on its
version: up to curl commit 98dae1d992 (September 2025) it prints the level
its context could have ("supports GSS-API confidentiality data
protection") and then asks for 0 all the same (curl 7.88.1 does); since,
it asks for confidentiality when its context has it.  The server grants
the level asked for when allowed, so the old curls work with the default
levels and the new ones only with C{--gssapi-protection none}: the tests
start the server with that.  A server that grants only integrity or
confidentiality answers with the strongest, and curl gives up.

curl 7.x and 8.x before its SOCKS rework of August 2025 (curl commit
ccd2b03b0d) have a bug that makes C{--socks5-gssapi} fail against any
server that does not answer at once: the C{allow_gssapi} flag of
C{do_SOCKS5} is a local variable set only in the state that sends the
greeting, so when the method selection is not already there on curl's
first read and the state machine comes back for it, curl says "SOCKS5
GSSAPI per-message authentication is not supported" (curl 7.88.1, Debian
12's, does).  The test preloads into such a curl a C{recv} that first
waits for the socket to be readable (L{_WAITING_RECV}, built with C{gcc}),
so that its first read finds the server's answer; no byte on the wire
changes.  Those curls have a second bug: once the GSS-API exchange has
succeeded, C{do_SOCKS5} falls through to "Undocumented SOCKS5 mode
attempted to be used by server" and never sends its request.  Against
them the test checks what can be checked, the whole RFC 1961 exchange:
curl's verbose output says the server granted access without data
protection, and the server logged the session under curl's principal;
the file is fetched only with a curl from 8.16 on.

So the same tests run a second time with a current curl: the C{Built...}
classes run the curl that C{.ci/build-curl-gssapi} builds from Debian's
source (8.20 or later, HTTP and GSS-API only) and installs at
L{BUILT_CURL}; CI runs that script.  With it the file is fetched and
compared whole.  On the wire that curl asks for confidentiality (its MIT
Kerberos context has it): wrapped, or bare with C{--socks5-gssapi-nec};
the server, started with C{--gssapi-protection none}, logs "asked for
protection confidentiality, granted none", answers level 0, and curl
sends its request unprotected and gets the file.  When the server grants
a protection level instead (integrity only, or its default levels, which
grant the confidentiality asked for), curl says "SOCKS5 access with
GSS-API integrity (or confidentiality) protection granted" and then, not
implementing per-message protection, still writes its SOCKS5 request
unwrapped before it gives up ("SOCKS5 GSS-API protection not yet
implemented", exit code 97): the server reads a version 5 where an
RFC 1961 MTYP 3 message must start, logs "protocol error: GSSAPI message
version 5, not 1", and closes; the target never sees a connection.
"""

from __future__ import annotations

import hashlib
import os

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from .._kerberos import KerberosRealm, requireKerberosRealm
from ._support import (
    HTTPFileServer,
    ProcessResult,
    SOCKSServerProcess,
    fetchWithCurl,
    requireBuilt,
    requirePeer,
    runProcess,
    runTwistd,
    startHTTPServer,
    startSOCKSServer,
    testDirectory,
)

#: curl's exit code when its --max-time ran out.
CURLE_OPERATION_TIMEDOUT = 28

#: curl's exit code for a failed SOCKS proxy handshake.
CURLE_PROXY = 97

#: Where C{.ci/build-curl-gssapi} installs the curl it builds.
BUILT_CURL = "/opt/socks-twisted-peers/curl-gssapi/bin/curl"


def requireBuiltCurl() -> str:
    """
    Find the curl built by C{.ci/build-curl-gssapi}.

    @return: L{BUILT_CURL}.

    @raise SkipTest: If it is missing and the tests do not run under CI.
    @raise AssertionError: If it is missing and C{CI} is C{"true"}: CI runs
        the script, so a missing curl is a broken CI setup.
    """
    return requireBuilt(
        BUILT_CURL,
        "Debian 12's curl stops after the GSS-API exchange",
        ".ci/build-curl-gssapi",
    )


#: A C{recv} that waits (up to two seconds) for something to read before
#: reading: preloaded into a curl with the C{allow_gssapi} bug, it makes
#: curl's first read of the method selection find it.
_WAITING_RECV = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

ssize_t recv(int fd, void *buf, size_t len, int flags) {
    static ssize_t (*real)(int, void *, size_t, int);
    struct pollfd p = {fd, POLLIN, 0};
    if (!real)
        real = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
    poll(&p, 1, 2000);
    return real(fd, buf, len, flags);
}
"""


def _curlHasGSSAPIStateBug(version: bytes) -> bool:
    """
    Whether C{curl --version}'s output names a curl with the lost
    C{allow_gssapi} bug: any before 8.16.
    """
    words = version.split()
    if len(words) < 2:
        return True
    try:
        numbers = tuple(int(part) for part in words[1].split(b".")[:2])
    except ValueError:
        return True
    return numbers < (8, 16)


class CurlGSSAPITests(TestCase):
    """
    curl through a server that offers only the GSSAPI method.
    """

    #: Options of C{twistd socks} besides the keytab.
    serverOptions: tuple[str, ...] = ("--gssapi-protection", "none")

    #: Whether to run the curl of C{.ci/build-curl-gssapi} (which must not
    #: have the bugs above) instead of the system's.
    builtCurl = False

    def setUp(self) -> None:
        if self.builtCurl:
            self.curl = requireBuiltCurl()
        else:
            self.curl = requirePeer("curl", "curl")
        self.realm: KerberosRealm = requireKerberosRealm(self)
        self.socks: SOCKSServerProcess = startSOCKSServer(
            self, "--gssapi-keytab", self.realm.keytab, *self.serverOptions
        )
        self.http: HTTPFileServer = startHTTPServer(self)

    async def curlEnvironment(self) -> dict[str, str]:
        """
        The realm's environment for curl, with L{_WAITING_RECV} preloaded
        if this curl has the C{allow_gssapi} bug.
        """
        env = self.realm.childEnvironment({"PATH": os.environ.get("PATH", "")})
        version = await runProcess([self.curl, "--version"])
        self.buggyCurl = _curlHasGSSAPIStateBug(version.stdout)
        if self.builtCurl:
            self.assertFalse(self.buggyCurl, version.describe())
        if not self.buggyCurl:
            return env
        gcc = requirePeer("gcc", "gcc")
        directory = testDirectory(self)
        source = os.path.join(directory, "waitingrecv.c")
        library = os.path.join(directory, "waitingrecv.so")
        with open(source, "w") as f:
            f.write(_WAITING_RECV)
        built = await runProcess(
            [gcc, "-shared", "-fPIC", "-o", library, source, "-ldl"], env=env
        )
        self.assertEqual(built.exitCode, 0, built.describe())
        env["LD_PRELOAD"] = library
        return env

    async def fetch(self, *curlArgs: str) -> tuple[ProcessResult, bytes | None]:
        """
        Run curl in the realm's environment through the server, saving the
        body to a file, and read that file.
        """
        env = await self.curlEnvironment()
        return await fetchWithCurl(
            self,
            self.curl,
            ["--socks5", f"localhost:{self.socks.port}", *curlArgs, self.http.url()],
            env,
        )

    async def assertFetches(self, *curlArgs: str) -> None:
        """
        Assert that curl, with these arguments, downloads the whole file (or
        with a curl that has the bugs above, gets through the whole GSS-API
        exchange), and that the server logged the user's principal.
        """
        result, body = await self.fetch("--verbose", *curlArgs)
        if self.buggyCurl:
            self.assertIn(
                b"SOCKS5 access without GSS-API data protection granted",
                result.stderr,
                result.describe(),
            )
            self.assertIn(b"Undocumented SOCKS5 mode", result.stderr)
            await self.assertLogged(self.realm.userPrincipal.encode())
            await self.assertLogged(b"granted none")
            return
        self.assertEqual(result.exitCode, 0, result.describe())
        assert body is not None
        self.assertEqual(len(body), len(self.http.body))
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.http.sha256)
        await self.assertLogged(self.realm.userPrincipal.encode())
        await self.assertLogged(b"granted none")
        if self.builtCurl:
            nec = b" (NEC, unwrapped)" if "--socks5-gssapi-nec" in curlArgs else b""
            await self.assertLogged(
                b"asked for protection confidentiality" + nec + b", granted none"
            )

    async def assertLogged(self, text: bytes) -> bytes:
        """
        Wait (a little) until the server's log has C{text}.

        @return: The log.
        """
        for _ in range(100):
            with open(self.socks.logPath, "rb") as f:
                log = f.read()
            if text in log:
                return log
            await deferLater(reactor, 0.05)
        self.fail(
            f"{text!r} not in the server's log:\n{log.decode('utf-8', 'replace')}"
        )

    async def assertRefused(self, *curlArgs: str) -> ProcessResult:
        """
        Assert that curl fails without a body and the target saw nothing.

        @return: How curl ended (its verbose output in C{stderr}).
        """
        result, body = await self.fetch("--verbose", *curlArgs)
        self.assertNotIn(
            result.exitCode, (0, None, CURLE_OPERATION_TIMEDOUT), result.describe()
        )
        self.assertFalse(body)
        self.assertEqual(self.http.connectionCount, 0)
        return result

    async def assertProtectionRefused(self, granted: str, *curlArgs: str) -> None:
        """
        Assert that a curl without the bugs above, granted a protection
        level, gives up on it at once, after writing its request unwrapped,
        which the server refuses as no RFC 1961 message.

        @param granted: The level the server grants, as curl names it.
        """
        result = await self.assertRefused(*curlArgs)
        self.assertEqual(result.exitCode, CURLE_PROXY, result.describe())
        self.assertIn(
            f"SOCKS5 access with GSS-API {granted} protection granted".encode(),
            result.stderr,
        )
        self.assertIn(b"SOCKS5 GSS-API protection not yet implemented", result.stderr)
        await self.assertLogged(f"granted {granted}".encode())
        await self.assertLogged(b"protocol error: GSSAPI message version 5, not 1")

    async def test_gssapi(self) -> None:
        """
        C{curl --socks5-gssapi} (protection levels wrapped) downloads the
        file intact.
        """
        await self.assertFetches("--socks5-gssapi")

    async def test_gssapiNEC(self) -> None:
        """
        C{curl --socks5-gssapi-nec} (protection levels unwrapped) downloads
        the file intact.
        """
        await self.assertFetches("--socks5-gssapi", "--socks5-gssapi-nec")


class CurlGSSAPIAllowListTests(CurlGSSAPITests):
    """
    The principal is on the allow-list, by realm.
    """

    serverOptions = ("--gssapi-protection", "none", "--gssapi-allow", "@KRBTEST.COM")


class CurlGSSAPIRefusalTests(CurlGSSAPITests):
    """
    A server whose allow-list leaves curl's principal out.
    """

    serverOptions = (
        "--gssapi-protection",
        "none",
        "--gssapi-allow",
        "someone-else@KRBTEST.COM",
    )

    async def test_gssapi(self) -> None:
        """
        A principal not on the allow-list is refused: the server logs why.
        """
        await self.assertRefused("--socks5-gssapi")
        await self.assertLogged(b"not allowed")

    async def test_gssapiNEC(self) -> None:
        """
        The same with the NEC variant.
        """
        await self.assertRefused("--socks5-gssapi", "--socks5-gssapi-nec")
        await self.assertLogged(b"not allowed")


class CurlGSSAPIProtectedOnlyTests(CurlGSSAPITests):
    """
    A server that grants only integrity or confidentiality, neither of which
    curl's context provides.
    """

    serverOptions: tuple[str, ...] = (
        "--gssapi-protection",
        "integrity,confidentiality",
    )

    async def test_gssapi(self) -> None:
        """
        The server grants confidentiality (the strongest level it allows),
        which curl reads from the wrapped answer and gives up on; it fetched
        nothing.
        """
        if self.builtCurl:
            await self.assertProtectionRefused("confidentiality", "--socks5-gssapi")
            return
        result = await self.assertRefused("--socks5-gssapi")
        self.assertIn(
            b"SOCKS5 access with GSS-API confidentiality protection granted",
            result.stderr,
        )
        await self.assertLogged(b"granted confidentiality")

    async def test_gssapiNEC(self) -> None:
        """
        The same with the NEC variant.
        """
        if self.builtCurl:
            await self.assertProtectionRefused(
                "confidentiality", "--socks5-gssapi", "--socks5-gssapi-nec"
            )
        else:
            await self.assertRefused("--socks5-gssapi", "--socks5-gssapi-nec")
        await self.assertLogged(b"(NEC, unwrapped), granted confidentiality")


class GSSAPIStartupTests(TestCase):
    """
    C{twistd socks --gssapi-keytab} with a keytab it cannot use.
    """

    def test_badKeytab(self) -> None:
        """
        A keytab that does not exist is a one-line start-up error naming the
        option, with a non-zero exit status and no traceback.
        """
        self.assertRefusesMissingKeytab()

    def test_badKeytabWorkers(self) -> None:
        """
        Under C{--workers} the supervisor refuses the keytab the same way.
        """
        self.assertRefusesMissingKeytab("--workers", "2")

    def assertRefusesMissingKeytab(self, *options: str) -> None:
        """
        C{twistd socks} with C{options} and a keytab that does not exist
        ends with one line naming the option, a non-zero status and no
        traceback.
        """
        requireKerberosRealm(self)
        directory = testDirectory(self)
        missing = os.path.join(directory, "missing.keytab")
        result = runTwistd(
            "-n",
            "--pidfile=",
            "socks",
            "--port",
            "tcp:0:interface=127.0.0.1",
            *options,
            "--gssapi-keytab",
            missing,
            cwd=directory,
        )
        self.assertNotEqual(result.status, 0, result.output)
        self.assertIn(f"--gssapi-keytab {missing}:", result.output)
        self.assertNotIn("Traceback", result.output)

    def test_badProtection(self) -> None:
        """
        An unknown protection level is a usage error.
        """
        result = runTwistd(
            "socks",
            "--gssapi-protection",
            "none,secret",
            cwd=testDirectory(self),
        )
        self.assertNotEqual(result.status, 0, result.output)
        self.assertIn("'secret'", result.output)


class CurlGSSAPIWorkersTests(CurlGSSAPITests):
    """
    The same under C{--workers 2}: every worker reads the keytab.
    """

    serverOptions = ("--gssapi-protection", "none", "--workers", "2")


class BuiltCurlGSSAPITests(CurlGSSAPITests):
    """
    The curl of C{.ci/build-curl-gssapi} downloads the file through a
    server that grants no protection.
    """

    builtCurl = True


class BuiltCurlGSSAPIAllowListTests(CurlGSSAPIAllowListTests):
    """
    The same with the principal's realm on the allow-list.
    """

    builtCurl = True


class BuiltCurlGSSAPIRefusalTests(CurlGSSAPIRefusalTests):
    """
    The curl of C{.ci/build-curl-gssapi} refused by the allow-list.
    """

    builtCurl = True


class BuiltCurlGSSAPIProtectedOnlyTests(CurlGSSAPIProtectedOnlyTests):
    """
    The curl of C{.ci/build-curl-gssapi} granted confidentiality, the level
    it asked for.
    """

    builtCurl = True


class BuiltCurlGSSAPIDefaultProtectionTests(CurlGSSAPIProtectedOnlyTests):
    """
    The same with the server's default protection levels, which grant the
    confidentiality the new curl asks for: with them, it cannot fetch.
    """

    builtCurl = True
    serverOptions = ()


class BuiltCurlGSSAPIIntegrityOnlyTests(CurlGSSAPITests):
    """
    The curl of C{.ci/build-curl-gssapi} and a server that grants only
    integrity: curl asks for confidentiality, is granted integrity, and
    gives up.
    """

    builtCurl = True
    serverOptions = ("--gssapi-protection", "integrity")

    async def test_gssapi(self) -> None:
        """
        Granted integrity in the wrapped answer, curl gives up (after
        writing its request unwrapped, which the server refuses); the
        target saw nothing.
        """
        await self.assertProtectionRefused("integrity", "--socks5-gssapi")
        await self.assertLogged(
            b"asked for protection confidentiality, granted integrity"
        )

    async def test_gssapiNEC(self) -> None:
        """
        The same with the NEC variant.
        """
        await self.assertProtectionRefused(
            "integrity", "--socks5-gssapi", "--socks5-gssapi-nec"
        )
        await self.assertLogged(
            b"asked for protection confidentiality (NEC, unwrapped), granted integrity"
        )


class BuiltCurlGSSAPIWorkersTests(CurlGSSAPIWorkersTests):
    """
    The curl of C{.ci/build-curl-gssapi} under C{--workers 2}.
    """

    builtCurl = True
