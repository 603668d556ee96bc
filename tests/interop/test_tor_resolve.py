"""
Interoperability with Tor's C{tor-resolve} (Debian package C{tor}; only that
binary runs, never a Tor daemon): it asks C{twistd socks} to resolve
C{localhost} over SOCKS5 (C{-5}) and SOCKS4a (C{-4}), and for the name of
C{127.0.0.1} (C{-x}, RESOLVE_PTR).

What tor-resolve 0.4.9 sends, as recorded by a listener: C{05 f0 00 03
<len> <name> 0000} (SOCKS5 RESOLVE, port 0), C{04 f0 0000 00000001 00
<name> 00} (SOCKS4a, empty user ID) and C{05 f1 00 01 7f000001 0000}
(RESOLVE_PTR).  It prints the answer on one line and exits 0, or logs
C{Got SOCKS5 status response '4'} and exits 1.  It talks to any port.
"""

from __future__ import annotations

import os
import socket

from twisted.trial.unittest import TestCase

from ._support import (
    ProcessResult,
    SOCKSServerProcess,
    requirePeer,
    runProcess,
    startSOCKSServer,
    testDirectory,
)


def _localhostIPv4() -> set[str]:
    """
    The IPv4 addresses this machine's resolver gives C{localhost}.
    """
    return {
        str(info[4][0]) for info in socket.getaddrinfo("localhost", 0, socket.AF_INET)
    }


def _nameOfLoopback() -> str:
    """
    The name this machine's resolver gives 127.0.0.1 (often C{localhost}),
    as the server looks it up.
    """
    name, _ = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)
    return name


class TorResolveTests(TestCase):
    """
    tor-resolve against C{twistd socks} on loopback.
    """

    torResolve: str
    socks: SOCKSServerProcess

    def setUp(self) -> None:
        self.torResolve = requirePeer("tor-resolve", "tor")

    def start(self, *args: str) -> None:
        """
        Start the server with C{args}.
        """
        self.socks = startSOCKSServer(self, *args)

    async def resolve(self, *args: str) -> ProcessResult:
        """
        Run tor-resolve with C{args} and the server's address.
        """
        return await runProcess(
            [self.torResolve, *args, f"127.0.0.1:{self.socks.port}"],
            path=testDirectory(self),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            timeout=60,
        )

    def answer(self, result: ProcessResult) -> str:
        """
        The one line tor-resolve printed, after checking that it succeeded.
        """
        self.assertEqual(result.exitCode, 0, result.describe())
        return result.stdout.decode("ascii").strip()

    async def test_socks5(self) -> None:
        """
        C{tor-resolve -5 localhost}: SOCKS5 RESOLVE answers an IPv4 address
        of localhost, and the session log names the command.
        """
        self.start()
        result = await self.resolve("-5", "localhost")
        self.assertIn(self.answer(result), _localhostIPv4())
        self.assertIn("RESOLVE", self.socks.output())

    async def test_socks4a(self) -> None:
        """
        C{tor-resolve -4 localhost}: SOCKS4a RESOLVE, the answer in DSTIP.
        """
        self.start()
        result = await self.resolve("-4", "localhost")
        self.assertIn(self.answer(result), _localhostIPv4())

    async def test_reverse(self) -> None:
        """
        C{tor-resolve -x 127.0.0.1}: RESOLVE_PTR answers the name this
        machine's resolver gives 127.0.0.1.
        """
        self.start()
        result = await self.resolve("-x", "127.0.0.1")
        self.assertEqual(self.answer(result), _nameOfLoopback())

    async def test_denied(self) -> None:
        """
        A name whose every address the rules deny is not resolved: reply 2,
        which tor-resolve reports and exits 1 on; so is a reverse lookup of a
        denied address.  CONNECT rules do not apply to RESOLVE.
        """
        config = os.path.join(testDirectory(self), "socks.toml")
        with open(config, "w") as f:
            f.write(
                '[[rules]]\naction = "deny"\ncommands = ["resolve", "resolve_ptr"]\n'
                'to = ["loopback"]\n'
            )
        self.start("--config", config)
        result = await self.resolve("-5", "localhost")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn(b"status response '2'", result.stderr + result.stdout)
        result = await self.resolve("-x", "127.0.0.1")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn(b"status response '2'", result.stderr + result.stdout)

    async def test_turnedOff(self) -> None:
        """
        With C{--no-tor-resolve}, RESOLVE gets reply 7, command not
        supported.
        """
        self.start("--no-tor-resolve")
        result = await self.resolve("-5", "localhost")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn(b"status response '7'", result.stderr + result.stdout)
        result = await self.resolve("-x", "127.0.0.1")
        self.assertEqual(result.exitCode, 1, result.describe())

    async def test_turnedOffByConfig(self) -> None:
        """
        C{no-tor-resolve = true} in the file's C{[server]} table does the
        same; SOCKS4a RESOLVE then gets 91, which tor-resolve reports.
        """
        config = os.path.join(testDirectory(self), "socks.toml")
        with open(config, "w") as f:
            f.write("[server]\nno-tor-resolve = true\n")
        self.start("--config", config)
        result = await self.resolve("-4", "localhost")
        self.assertEqual(result.exitCode, 1, result.describe())
