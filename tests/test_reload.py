"""
In-process tests of C{--config}: how L{tap.Options} takes the file's
C{[server]} table and users file, and how L{Reloader} applies a changed
file to a running factory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, cast

from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted import tap
from socks_twisted._reload import RELOADABLE, Reloader
from socks_twisted.config import loadConfig
from socks_twisted.policy import Request
from socks_twisted.server import ServerSettings, SOCKSServerFactory
from socks_twisted.users import HashedPasswordChecker, UsersFile

from .test_tap import memoryReactor


def messages(events: Sequence[LogEvent]) -> str:
    """
    The formatted text of C{events}.
    """
    return "\n".join(formatEvent(e) for e in events)


def connectTo(host: str, port: int) -> Request:
    """
    A CONNECT from 127.0.0.1 without a user, as the rules see it.
    """
    return Request(
        client="127.0.0.1",
        user=None,
        version="5",
        command="connect",
        host=host,
        port=port,
    )


class ConfigFileTestCase(SynchronousTestCase):
    """
    Writes configuration and users files in a test's temporary directory.
    """

    _directory: str

    def write(self, text: str, name: str = "socks.toml") -> str:
        directory = getattr(self, "_directory", None)
        if directory is None:
            directory = self._directory = self.mktemp()
            os.makedirs(directory)
        assert directory is not None
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def addUser(self, name: str, password: str, file: str = "users") -> str:
        if getattr(self, "_directory", None) is None:
            self._directory = self.mktemp()
            os.makedirs(self._directory)
        path = os.path.join(self._directory, file)
        subprocess.run(
            [sys.executable, "-m", "socks_twisted.passwd", "--stdin", path, name],
            input=password.encode() + b"\n",
            check=True,
            capture_output=True,
        )
        return path


class ApplyConfigTests(ConfigFileTestCase):
    """
    L{tap.Options} with C{--config}.
    """

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options(memoryReactor())
        options.parseOptions(list(argv))
        return options

    def test_serverTable(self) -> None:
        """
        The file's options are taken: ports (a list), flags, numbers.
        """
        path = self.write(
            "[server]\n"
            'port = ["tcp:1081:interface=127.0.0.1", "tcp:1082:interface=127.0.0.1"]\n'
            "handshake-timeout = 7\n"
            "max-sessions = 10\n"
            "allow-socks4-with-auth = true\n"
        )
        options = self.parse("--config", path)
        self.assertEqual(
            options["ports"],
            ["tcp:1081:interface=127.0.0.1", "tcp:1082:interface=127.0.0.1"],
        )
        self.assertEqual(options["handshake-timeout"], 7.0)
        self.assertEqual(options["max-sessions"], 10)
        self.assertTrue(options["allow-socks4-with-auth"])

    def test_commandLineWins(self) -> None:
        """
        An option on the command line, in either spelling, wins over the
        file; the others still come from it.
        """
        path = self.write(
            "[server]\n"
            'port = "tcp:1081:interface=127.0.0.1"\n'
            "handshake-timeout = 7\n"
            "connect-timeout = 9\n"
        )
        options = self.parse(
            "--handshake-timeout=3",
            "-p",
            "tcp:1083:interface=127.0.0.1",
            "--config",
            path,
        )
        self.assertEqual(options["handshake-timeout"], 3.0)
        self.assertEqual(options["ports"], ["tcp:1083:interface=127.0.0.1"])
        self.assertEqual(options["connect-timeout"], 9.0)

    def test_badServerKeys(self) -> None:
        """
        A key that is no option, or a value that does not fit one, is a
        usage error naming the file, the table and the key.
        """
        for text, key in [
            ("[server]\nlisten = 1\n", "listen"),
            ("[server]\nport = [1]\n", "port"),
            ("[server]\nallow-socks4-with-auth = 1\n", "allow-socks4-with-auth"),
            ('[server]\nmax-sessions = "many"\n', "max-sessions"),
            ("[server]\nhandshake-timeout = true\n", "handshake-timeout"),
            ("[server]\nexternal-address = 5\n", "external-address"),
        ]:
            path = self.write(text)
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--config", path)
            self.assertIn(f"{path}: [server] key {key!r}", str(caught.exception))

    def test_badFile(self) -> None:
        """
        A file that does not load is a usage error that names it once.
        """
        path = self.write("[limits]\nsessions-per-user = -1\n")
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--config", path)
        self.assertEqual(str(caught.exception).count(path), 1)

    def test_usersFile(self) -> None:
        """
        A users file is loaded, and counts as authentication: a public
        listener needs no --allow-public-unauthenticated.
        """
        path = self.write('[users]\nfile = "users"\n')
        self.addUser("alice", "pw")
        options = self.parse("--config", path, "--port", "tcp:1080")
        users = options["users"]
        assert isinstance(users, UsersFile)
        self.assertEqual(list(users.hashes), [b"alice"])

    def test_usersFileProblem(self) -> None:
        """
        A users file that does not load is named with the key that named it.
        """
        path = self.write('[users]\nfile = "missing"\n')
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--config", path)
        self.assertIn(f"{path}: [users] key 'file': ", str(caught.exception))


class ReloaderTests(ConfigFileTestCase):
    """
    L{Reloader} on a factory with a fake reactor.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def start(
        self,
        text: str,
        *,
        commandLine: frozenset[str] = frozenset(),
        users: bool = False,
    ) -> tuple[Reloader, SOCKSServerFactory, HashedPasswordChecker | None]:
        path = self.write(text)
        config = loadConfig(path)
        factory = SOCKSServerFactory(self.reactor, settings=ServerSettings())
        factory.setRules(config.rules, config.groups)
        checker = None
        if users:
            pool = ThreadPool(0, 1)
            checker = HashedPasswordChecker(
                UsersFile.load(os.path.join(self._directory, "users")),
                cast(IReactorFromThreads, self.reactor),
                pool,
            )
        reloader = Reloader(
            config,
            factory,
            commandLine=commandLine,
            checker=checker,
            publicListener=False,
        )
        return reloader, factory, checker

    def test_rulesLimitsAndTimeouts(self) -> None:
        """
        A reload applies the new rules, limits, bandwidth caps and timeouts.
        """
        reloader, factory, _ = self.start("")
        self.assertTrue(factory.policy.decide(connectTo("192.0.2.1", 22)).allowed)
        self.write(
            "[server]\nhandshake-timeout = 4\nidle-timeout = 0\n"
            '[limits]\nsessions-per-client = 3\nbandwidth-per-session = "1kB"\n'
            '[[rules]]\naction = "deny"\nports = [22]\n'
        )
        with capturedLogs() as events:
            self.assertTrue(reloader.reload())
        self.assertFalse(factory.policy.decide(connectTo("192.0.2.1", 22)).allowed)
        self.assertEqual(factory.settings.handshakeTimeout, 4.0)
        self.assertIsNone(factory.settings.idleTimeout)
        self.assertEqual(factory.settings.limits.sessionsPerClient, 3)
        self.assertEqual(factory.limiter.limits.sessionsPerClient, 3)
        self.assertEqual(factory.settings.bandwidthPerSession, 1000)
        self.assertIn("reloaded", messages(events))

    def test_commandLineStillWins(self) -> None:
        """
        Options given on the command line are not taken from the file at a
        reload either.
        """
        reloader, factory, _ = self.start(
            "", commandLine=frozenset({"handshake-timeout"})
        )
        self.write("[server]\nhandshake-timeout = 4\nconnect-timeout = 5\n")
        self.assertTrue(reloader.reload())
        self.assertEqual(factory.settings.handshakeTimeout, 30.0)
        self.assertEqual(factory.settings.connectTimeout, 5.0)

    def test_restartOnly(self) -> None:
        """
        A changed or removed option that needs a restart is logged as
        ignored; the rest is applied.
        """
        reloader, _, _ = self.start('[server]\nport = "tcp:1080"\nmax-sessions = 5\n')
        self.write('[server]\nport = "tcp:1081"\n')
        with capturedLogs() as events:
            self.assertTrue(reloader.reload())
        text = messages(events)
        self.assertIn("[server] port changed, ignored until restart", text)
        self.assertIn("[server] max-sessions removed, ignored until restart", text)

    def test_brokenFileKept(self) -> None:
        """
        A file that fails to load, or a timeout that is not one, changes
        nothing and is logged.
        """
        reloader, factory, _ = self.start('[[rules]]\naction = "deny"\nports = [22]\n')
        before = factory.policy
        for text in ("[limits\n", "[server]\nconnect-timeout = -1\n"):
            self.write(text)
            with capturedLogs() as events:
                self.assertFalse(reloader.reload())
            self.assertIs(factory.policy, before)
            self.assertIn("running configuration is kept", messages(events))

    def test_usersReplaced(self) -> None:
        """
        The users file is read again: the checker gets the new users.
        """
        self.addUser("alice", "pw")
        reloader, _, checker = self.start('[users]\nfile = "users"\n', users=True)
        assert checker is not None
        self.addUser("bob", "pw")
        self.assertTrue(reloader.reload())
        self.assertEqual(sorted(checker.users.hashes), [b"alice", b"bob"])

    def test_usersAddedOrRemoved(self) -> None:
        """
        A users file added to a server started without one, or removed from
        one started with one, waits for a restart, and says so.
        """
        reloader, _, _ = self.start("")
        self.addUser("alice", "pw")
        self.write('[users]\nfile = "users"\n')
        with capturedLogs() as events:
            self.assertTrue(reloader.reload())
        self.assertIn("ignored until restart", messages(events))
        reloader, _, checker = self.start('[users]\nfile = "users"\n', users=True)
        self.write("")
        with capturedLogs() as events:
            self.assertTrue(reloader.reload())
        self.assertIn(
            "removing [users] file is ignored until restart", messages(events)
        )
        assert checker is not None
        self.assertEqual(list(checker.users.hashes), [b"alice"])

    def test_reloadable(self) -> None:
        """
        Every reloadable key is an option of twistd socks.
        """
        names = {p[0] for p in cast(list[list[Any]], tap.Options.optParameters)}
        self.assertLessEqual(set(RELOADABLE), names)
