"""
Tests for the C{twistd socks} plugin, run as an operator runs it: C{twistd}
in a child process.

Twisted ships a SOCKSv4 plugin under the same name C{socks}; these tests
check that ours is the one C{twistd socks} runs, in the current environment
and in a new virtualenv whose plugin cache was written before this package
was installed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import sys
from importlib import metadata

from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from .interop._support import (
    CLEAN_EXIT_STATUSES,
    SHUT_DOWN_LINE,
    CompletedTwistd,
    ProcessResult,
    runProcess,
    runTwistd,
    startSOCKSServer,
    testDirectory,
)

#: Options that our plugin has and Twisted's SOCKSv4 plugin has not.
OUR_OPTIONS = (
    "--port",
    "--auth",
    "--allow-socks4-with-auth",
    "--allow-public-unauthenticated",
    "--handshake-timeout",
    "--connect-timeout",
    "--idle-timeout",
    "--max-sessions",
)

#: Text of Twisted's own SOCKSv4 plugin's help, which ours must replace.
TWISTED_SOCKS_HELP = ("Makes a SOCKSv4 server.", "--interface")

#: What pip prints when it cannot reach the package index.
_OFFLINE_SIGNS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Network is unreachable|"
    r"No matching distribution found|Could not fetch URL|ConnectTimeout|"
    r"ProxyError|Max retries exceeded"
)


def repositoryRoot() -> str:
    """
    @return: The directory that holds C{setup.cfg} and this C{tests}
        package.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, "setup.cfg")):
        raise SkipTest(f"no source tree (setup.cfg) at {root}")
    return root


def socks5Greeting(port: int, methods: bytes, host: str = "127.0.0.1") -> bytes:
    """
    Send a SOCKS5 method-selection message and read the two-byte answer.

    @param port: The server's TCP port.
    @param methods: The method codes offered.
    @param host: The loopback address to connect to.

    @return: The bytes received, at most two; fewer if the server closed.
    """
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
        answer = b""
        while len(answer) < 2:
            chunk = sock.recv(2 - len(answer))
            if not chunk:
                break
            answer += chunk
        return answer


def ipv6LoopbackAvailable() -> bool:
    """
    @return: Whether a socket can bind C{::1} on this host.
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class PluginHelpTests(SynchronousTestCase):
    """
    C{twistd socks --help} describes our server, not Twisted's SOCKSv4 one.
    """

    def test_helpShowsOurOptions(self) -> None:
        """
        The help lists every option of ours, the default listening address,
        and nothing of Twisted's SOCKSv4 plugin.
        """
        result = runTwistd("socks", "--help", cwd=testDirectory(self))
        self.assertEqual(result.status, 0, result.output)
        for option in OUR_OPTIONS:
            self.assertIn(option, result.output)
        self.assertIn("tcp:1080:interface=127.0.0.1", result.output)
        for oldText in TWISTED_SOCKS_HELP:
            self.assertNotIn(oldText, result.output)


class PluginServesTests(SynchronousTestCase):
    """
    C{twistd -n socks} listens where it is told, serves SOCKS5, and stops on
    C{SIGTERM}.
    """

    def assertStopsCleanly(self, stop: int, output: str) -> None:
        """
        Assert that a twistd server shut down in order on C{SIGTERM}.

        @param stop: The exit status.
        @param output: Its log.
        """
        self.assertIn(stop, CLEAN_EXIT_STATUSES, output)
        self.assertIn(SHUT_DOWN_LINE, output)

    def test_servesAndStopsOnSIGTERM(self) -> None:
        """
        The server answers a SOCKS5 greeting offering "no authentication"
        with C{05 00}, and exits in order on C{SIGTERM}.
        """
        server = startSOCKSServer(self)
        self.assertEqual(socks5Greeting(server.port, b"\x00"), b"\x05\x00")
        status = server.stop()
        self.assertFalse(server.killed, server.output())
        self.assertStopsCleanly(status, server.output())

    def test_severalPorts(self) -> None:
        """
        C{--port} may be given more than once; the server listens on each.
        """
        server = startSOCKSServer(self, "--port", "tcp:0:interface=127.0.0.1")
        self.assertEqual(len(server.ports), 2)
        self.assertNotEqual(server.ports[0], server.ports[1])
        for port in server.ports:
            self.assertEqual(socks5Greeting(port, b"\x00"), b"\x05\x00")

    def test_ipv6LoopbackIsNotPublic(self) -> None:
        """
        The IPv6 loopback address counts as loopback: no option is needed to
        serve there without authentication.
        """
        if not ipv6LoopbackAvailable():
            raise SkipTest("no IPv6 loopback on this host")
        server = startSOCKSServer(self, listen=r"tcp6:0:interface=\:\:1")
        self.assertEqual(socks5Greeting(server.port, b"\x00", "::1"), b"\x05\x00")

    def assertRefusesToStart(self, result: CompletedTwistd, listen: str) -> None:
        """
        Assert that twistd exited with an error that names the option that
        would allow it, without ever listening.

        @param result: The twistd run.
        @param listen: The C{--port} description it was given.
        """
        message = f"twistd socks --port {listen}:\n{result.output}"
        self.assertNotEqual(result.status, 0, message)
        self.assertIn("--allow-public-unauthenticated", result.output, message)
        self.assertNotIn(" starting on ", result.output, message)

    def test_publicUnauthenticatedRefused(self) -> None:
        """
        Without C{--auth}, a non-loopback listening address (an explicit
        wildcard, or no interface at all) stops the server from starting,
        and the message names C{--allow-public-unauthenticated}.
        """
        for listen in ["tcp:0:interface=0.0.0.0", "tcp:0", r"tcp6:0:interface=\:\:"]:
            result = runTwistd(
                "-n",
                "--pidfile=",
                "socks",
                "--port",
                listen,
                cwd=testDirectory(self),
                timeout=30,
            )
            self.assertRefusesToStart(result, listen)

    def test_onePublicPortIsEnough(self) -> None:
        """
        One public address among loopback ones is enough to refuse.
        """
        result = runTwistd(
            "-n",
            "--pidfile=",
            "socks",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--port",
            "tcp:0:interface=0.0.0.0",
            cwd=testDirectory(self),
            timeout=30,
        )
        self.assertRefusesToStart(result, "tcp:0:interface=0.0.0.0")

    def test_publicUnauthenticatedAllowed(self) -> None:
        """
        With C{--allow-public-unauthenticated} the server starts on the
        wildcard address and serves (we connect over loopback only).
        """
        server = startSOCKSServer(
            self, "--allow-public-unauthenticated", listen="tcp:0:interface=0.0.0.0"
        )
        self.assertEqual(socks5Greeting(server.port, b"\x00"), b"\x05\x00")
        self.assertStopsCleanly(server.stop(), server.output())

    def test_publicWithAuthentication(self) -> None:
        """
        With C{--auth}, a public address needs no extra option, and the
        server accepts only username/password authentication (method 2).
        """
        server = startSOCKSServer(
            self, "--auth", "memory:user:pass", listen="tcp:0:interface=0.0.0.0"
        )
        self.assertEqual(socks5Greeting(server.port, b"\x00"), b"\x05\xff")
        self.assertEqual(socks5Greeting(server.port, b"\x00\x02"), b"\x05\x02")


def _installEnvironment() -> dict[str, str]:
    """
    Build the environment for pip and venv in a new virtualenv: ours,
    without anything that would make that virtualenv see our packages.

    @return: A new environment mapping.
    """
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONNOUSERSITE"):
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _twistedRequirement() -> str:
    """
    @return: A requirement for the Twisted release the tests run with (so
        pip's cache serves it), or any Twisted for a development version.
    """
    version = metadata.version("Twisted")
    if re.fullmatch(r"\d+(\.\d+)*", version):
        return f"Twisted[tls]=={version}"
    return "Twisted[tls]"


class StalePluginCacheTests(TestCase):
    """
    Installing this package into an environment whose Twisted plugin cache
    (C{twisted/plugins/dropin.cache}) already lists Twisted's own C{socks}
    plugin still makes C{twistd socks} ours.
    """

    # Making a virtualenv and installing Twisted into it takes a while.
    timeout = 600

    def assertSucceeded(self, result: ProcessResult, what: str) -> None:
        """
        Assert that a child process exited with status 0.

        @param result: How it ended.
        @param what: What it was doing, for the message.
        """
        self.assertEqual(result.exitCode, 0, f"{what} failed: {result.describe()}")

    async def test_installOverStaleCache(self) -> None:
        """
        In a new virtualenv: install Twisted, let C{twistd --help} write the
        plugin cache (in which C{socks} is Twisted's SOCKSv4 plugin), then
        install this package; C{twistd socks --help} shows our options, and
        C{twistd -n socks} runs our server.
        """
        source = repositoryRoot()
        work = testDirectory(self)
        venv = os.path.join(work, "venv")
        python = os.path.join(venv, "bin", "python")
        env = _installEnvironment()

        result = await runProcess(
            [sys.executable, "-m", "venv", venv], env=env, path=work, timeout=300
        )
        self.assertSucceeded(result, "python -m venv")
        result = await runProcess(
            [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                _twistedRequirement(),
                "setuptools>=68",
                "wheel",
            ],
            env=env,
            path=work,
            timeout=420,
        )
        if result.exitCode != 0 and os.environ.get("CI") != "true":
            output = (result.stdout + result.stderr).decode("utf-8", "replace")
            if _OFFLINE_SIGNS.search(output):
                raise SkipTest(f"pip cannot reach the package index:\n{output}")
        self.assertSucceeded(result, "pip install Twisted")

        # Before our package is installed: Twisted's plugin, and a cache.
        before = runTwistd("socks", "--help", python=python, cwd=work)
        self.assertEqual(before.status, 0, before.output)
        self.assertIn(TWISTED_SOCKS_HELP[0], before.output)
        caches = glob.glob(
            os.path.join(venv, "lib", "python*", "site-packages", "twisted")
            + "/plugins/dropin.cache"
        )
        self.assertEqual(len(caches), 1, f"no plugin cache was written in {venv}")
        with open(caches[0], "rb") as cacheFile:
            self.assertIn(b"twisted_socks", cacheFile.read())

        # Install from a copy, so that building leaves nothing in the tree.
        copy = os.path.join(work, "source")
        shutil.copytree(
            source,
            copy,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                "venv",
                "build",
                "dist",
                "*.egg-info",
                "_trial_temp*",
                "__pycache__",
                ".mypy_cache",
                ".ruff_cache",
                ".hypothesis",
                "dropin.cache",
            ),
        )
        result = await runProcess(
            [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-build-isolation",
                copy,
            ],
            env=env,
            path=work,
            timeout=420,
        )
        self.assertSucceeded(result, "pip install socks-twisted")

        after = runTwistd("socks", "--help", python=python, cwd=work)
        self.assertEqual(after.status, 0, after.output)
        for option in OUR_OPTIONS:
            self.assertIn(option, after.output)
        for oldText in TWISTED_SOCKS_HELP:
            self.assertNotIn(oldText, after.output)

        server = startSOCKSServer(self, python=python)
        self.assertEqual(socks5Greeting(server.port, b"\x00"), b"\x05\x00")
        self.assertIn(server.stop(), CLEAN_EXIT_STATUSES, server.output())
