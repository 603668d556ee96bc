"""
Tests for L{socks_twisted.users} (users files of hashed passwords and their
checker) and L{socks_twisted.passwd} (the tool that edits them).
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.testing import MemoryReactor
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from socks_twisted.auth import ISOCKSUser, SOCKSRealm, SOCKSUser, portalFor
from socks_twisted.passwd import main
from socks_twisted.users import (
    HashedPasswordChecker,
    UsersFile,
    UsersFileError,
    dummyHash,
    startThreadPool,
    verifyPassword,
)

from .interop._support import requirePeer

#: Hashes argon2id fast, for tests that make many hashes; the tool's own
#: default parameters are checked by L{PasswdToolTests.test_defaultHasher}.
FAST_ARGON2 = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

#: The reactor the checker tests deliver results in.
REACTOR = IReactorFromThreads(_globalReactor)

#: Hashes of refused schemes, as the tools that write them would, and what
#: the message calls each.
REFUSED = [
    (b"$apr1$3Ie6Cjpl$R3wBQqhu5dxwnOZQnUtnh/", "Apache MD5 ($apr1$)"),
    (b"{SHA}FsT+eUQsWJyVCv/DuUExaRp2LVo=", "unsalted SHA-1 ({SHA})"),
    (b"$1$saltsalt$" + b"x" * 22, "crypt(3) MD5"),
    (b"$5$saltsalt$" + b"x" * 43, "crypt(3) SHA-256"),
    (b"$6$rounds=5000$saltsalt$" + b"x" * 86, "crypt(3) SHA-512"),
    (
        FAST_ARGON2.hash(b"pw").encode("ascii").replace(b"$argon2id$", b"$argon2i$"),
        "only argon2id is accepted",
    ),
    (b"abJnggxhB/yWI", "crypt(3) DES"),
]


def bcryptHash(password: bytes, prefix: bytes = b"2y") -> bytes:
    """
    Hash a password with bcrypt at the lowest cost.

    @param password: The password.
    @param prefix: The version to write: C{b"2y"} as htpasswd does, C{b"2b"}
        or C{b"2a"}.

    @return: The hash.
    """
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4))
    return b"$" + prefix + hashed[3:]


def argon2Hash(password: bytes) -> bytes:
    """
    Hash a password with argon2id, quickly.

    @param password: The password.

    @return: The hash.
    """
    return FAST_ARGON2.hash(password).encode("ascii")


def writeUsers(testCase: SynchronousTestCase, content: bytes) -> str:
    """
    Write a users file for a test.

    @param testCase: The test.
    @param content: The file's content.

    @return: Its path.
    """
    path: str = testCase.mktemp()
    with open(path, "wb") as f:
        f.write(content)
    return path


def runPasswd(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """
    Run C{python -m socks_twisted.passwd} as an operator would.

    @param args: Its arguments.
    @param stdin: Its standard input.

    @return: How it ended.
    """
    return subprocess.run(
        [sys.executable, "-m", "socks_twisted.passwd", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


class UsersFileTests(SynchronousTestCase):
    """
    Tests for L{UsersFile.load}.
    """

    def assertRefused(self, content: bytes, *fragments: str) -> str:
        """
        Assert that a users file is refused with a one-line message.

        @param content: The file's content.
        @param fragments: What the message must contain.

        @return: The message.
        """
        path = writeUsers(self, content)
        error = self.assertRaises(UsersFileError, UsersFile.load, path)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertIn(path, message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_htpasswdBcrypt(self) -> None:
        """
        A bcrypt hash that the real C{htpasswd -B} wrote (C{$2y$}) is loaded
        and verifies the password.
        """
        htpasswd = requirePeer("htpasswd", "apache2-utils")
        path = self.mktemp()
        subprocess.run(
            [htpasswd, "-c", "-B", "-b", "-C", "4", path, "alice", "pw"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        users = UsersFile.load(path)
        self.assertEqual(users.path, path)
        self.assertEqual(list(users.hashes), [b"alice"])
        self.assertTrue(users.hashes[b"alice"].startswith(b"$2y$04$"))
        self.assertTrue(verifyPassword(users.hashes[b"alice"], b"pw"))
        self.assertFalse(verifyPassword(users.hashes[b"alice"], b"pW"))

    def test_passwdToolArgon2id(self) -> None:
        """
        An argon2id hash that C{python -m socks_twisted.passwd --stdin}
        wrote is loaded and verifies the password.
        """
        path = self.mktemp()
        result = runPasswd("--stdin", path, "bob", stdin=b"s3cret\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        users = UsersFile.load(path)
        self.assertEqual(list(users.hashes), [b"bob"])
        self.assertTrue(users.hashes[b"bob"].startswith(b"$argon2id$"))
        self.assertTrue(verifyPassword(users.hashes[b"bob"], b"s3cret"))
        self.assertFalse(verifyPassword(users.hashes[b"bob"], b"s3cret\n"))

    def test_commentsAndBlankLines(self) -> None:
        """
        Blank lines (spaces only, too) and C{#} comments are skipped; the
        users keep the file's order; CRLF line endings are accepted.
        """
        alice, bob, carol = bcryptHash(b"a"), argon2Hash(b"b"), bcryptHash(b"c", b"2b")
        path = writeUsers(
            self,
            b"# SOCKS users\n\n   \n"
            + b"alice:"
            + alice
            + b"\r\n  # bob is new\nbob:"
            + bob
            + b"\ncarol:"
            + carol,
        )
        users = UsersFile.load(path)
        self.assertEqual(
            dict(users.hashes), {b"alice": alice, b"bob": bob, b"carol": carol}
        )
        self.assertEqual(list(users.hashes), [b"alice", b"bob", b"carol"])

    def test_utf8Names(self) -> None:
        """
        Usernames are the bytes of the file.
        """
        hashed = bcryptHash(b"pw")
        path = writeUsers(self, "jos\u00e9:".encode() + hashed + b"\n")
        self.assertEqual(
            dict(UsersFile.load(path).hashes), {"jos\u00e9".encode(): hashed}
        )

    def test_empty(self) -> None:
        """
        A file of no users (here, comments only) loads, with no users.
        """
        path = writeUsers(self, b"# nobody yet\n")
        self.assertEqual(dict(UsersFile.load(path).hashes), {})

    def test_clearText(self) -> None:
        """
        A clear-text password is refused with a message that names the file
        and line and says how to hash it, without showing the password.
        """
        message = self.assertRefused(
            b"# users\nalice:" + bcryptHash(b"pw") + b"\nbob:hunter2\n",
            ", line 3:",
            "'bob'",
            "clear-text",
            "python -m socks_twisted.passwd ",
            " bob",
            "htpasswd -B ",
        )
        self.assertNotIn("hunter2", message)

    def test_refusedSchemes(self) -> None:
        """
        The weak schemes htpasswd and crypt(3) write, and argon2i, are
        refused, each with the message that says how to hash the password.
        """
        for hashed, description in REFUSED:
            self.assertRefused(
                b"alice:" + hashed + b"\n",
                ", line 1:",
                description,
                "python -m socks_twisted.passwd",
                "htpasswd -B",
            )

    def test_malformed(self) -> None:
        """
        A truncated bcrypt or argon2id hash is refused.
        """
        self.assertRefused(b"alice:" + bcryptHash(b"pw")[:-1], "malformed bcrypt")
        self.assertRefused(b"alice:$argon2id$v=19$m=8", "malformed argon2id")

    def test_notALine(self) -> None:
        """
        A line without a colon, or with no name before it, is refused
        without being shown.
        """
        message = self.assertRefused(b"\nhunter2\n", ", line 2:", "name:hash")
        self.assertNotIn("hunter2", message)
        self.assertRefused(b":" + bcryptHash(b"pw"), ", line 1:", "name:hash")

    def test_longName(self) -> None:
        """
        A name longer than RFC 1929 can carry is refused.
        """
        self.assertRefused(b"a" * 256 + b":" + bcryptHash(b"pw"), "255 bytes")

    def test_duplicate(self) -> None:
        """
        A user who appears twice is refused, naming both lines.
        """
        self.assertRefused(
            b"alice:"
            + bcryptHash(b"a")
            + b"\nbob:"
            + bcryptHash(b"b")
            + b"\nalice:"
            + argon2Hash(b"c"),
            ", line 3:",
            "'alice' appears again (first on line 1)",
        )

    def test_missing(self) -> None:
        """
        A missing file is refused.
        """
        path = self.mktemp()
        error = self.assertRaises(UsersFileError, UsersFile.load, path)
        self.assertEqual(str(error), f"{path}: no such file")

    def test_directory(self) -> None:
        """
        A directory is refused.
        """
        path = self.mktemp()
        os.mkdir(path)
        error = self.assertRaises(UsersFileError, UsersFile.load, path)
        self.assertEqual(str(error), f"{path}: is a directory, not a file")

    def test_hashable(self) -> None:
        """
        A L{UsersFile} is frozen and hashable, and compares by content.
        """
        hashed = bcryptHash(b"pw")
        path = writeUsers(self, b"alice:" + hashed)
        self.assertEqual(UsersFile.load(path), UsersFile(path, {b"alice": hashed}))
        self.assertEqual(hash(UsersFile.load(path)), hash(UsersFile.load(path)))


class VerifyPasswordTests(SynchronousTestCase):
    """
    Tests for L{verifyPassword} and L{dummyHash}.
    """

    def test_bcryptVersions(self) -> None:
        """
        bcrypt hashes of versions C{2y}, C{2b} and C{2a} verify.
        """
        for prefix in (b"2y", b"2b", b"2a"):
            hashed = bcryptHash(b"pw", prefix)
            self.assertTrue(verifyPassword(hashed, b"pw"), prefix)
            self.assertFalse(verifyPassword(hashed, b"px"), prefix)

    def test_bcryptLongPassword(self) -> None:
        """
        bcrypt verifies the first 72 bytes of a longer password, as
        C{htpasswd} hashed them, rather than failing.
        """
        hashed = bcryptHash(b"p" * 72)
        self.assertTrue(verifyPassword(hashed, b"p" * 255))
        self.assertFalse(verifyPassword(hashed, b"q" * 255))

    def test_argon2id(self) -> None:
        """
        argon2id hashes verify, with the parameters they carry.
        """
        hashed = argon2Hash(b"pw")
        self.assertTrue(verifyPassword(hashed, b"pw"))
        self.assertFalse(verifyPassword(hashed, b"px"))
        self.assertFalse(verifyPassword(hashed, b""))

    def test_dummyBcrypt(self) -> None:
        """
        For bcrypt users, the dummy hash is a well-formed bcrypt hash of the
        same version and cost (which bcrypt verifies at full cost rather than
        refusing at once), unlike every user's.
        """
        hashes = {b"alice": bcryptHash(b"a"), b"bob": bcryptHash(b"b")}
        dummy = dummyHash(UsersFile("users", hashes))
        self.assertTrue(dummy.startswith(b"$2y$04$"))
        self.assertNotIn(dummy, hashes.values())
        # bcrypt raises ValueError for a hash it cannot use.
        self.assertFalse(bcrypt.checkpw(b"a", b"$2b$" + dummy[4:]))
        self.assertFalse(verifyPassword(dummy, b"a"))

    def test_dummyArgon2id(self) -> None:
        """
        For argon2id users, the dummy hash has the parameters of theirs, and
        argon2 verifies it (a mismatch, not an invalid hash).
        """
        hashes = {b"alice": argon2Hash(b"a"), b"bob": argon2Hash(b"b")}
        dummy = dummyHash(UsersFile("users", hashes))
        self.assertEqual(dummy.rsplit(b"$", 2)[0], hashes[b"alice"].rsplit(b"$", 2)[0])
        self.assertEqual(
            [len(part) for part in dummy.rsplit(b"$", 2)[1:]],
            [len(part) for part in hashes[b"alice"].rsplit(b"$", 2)[1:]],
        )
        self.assertNotIn(dummy, hashes.values())
        self.assertRaises(VerifyMismatchError, FAST_ARGON2.verify, dummy, b"a")

    def test_dummyMostCommon(self) -> None:
        """
        In a file of several kinds of hashes, the dummy is of the most
        common kind.
        """
        hashes = {
            b"alice": argon2Hash(b"a"),
            b"bob": bcryptHash(b"b", b"2b"),
            b"carol": bcryptHash(b"c", b"2b"),
        }
        dummy = dummyHash(UsersFile("users", hashes))
        self.assertTrue(dummy.startswith(b"$2b$04$"))

    def test_dummyNoUsers(self) -> None:
        """
        For no users, the dummy is an argon2id hash of argon2-cffi's
        default parameters.
        """
        dummy = dummyHash(UsersFile("users", {}))
        self.assertTrue(dummy.startswith(b"$argon2id$v=19$m=65536,t=3,p=4$"))
        self.assertRaises(
            VerifyMismatchError, PasswordHasher().verify, dummy, b"anything"
        )


class RecordingVerifier:
    """
    A password verifier that records its calls, and can be held up.

    @ivar calls: The hashes and passwords it was called with.
    @ivar threads: The threads it ran in.
    @ivar release: Set to let calls return; set from the start unless
        C{blocked}.
    """

    def __init__(
        self,
        verify: Callable[[bytes, bytes], bool] = verifyPassword,
        blocked: bool = False,
    ) -> None:
        self._verify = verify
        self.calls: list[tuple[bytes, bytes]] = []
        self.threads: list[threading.Thread] = []
        self.release = threading.Event()
        if not blocked:
            self.release.set()

    def __call__(self, hashed: bytes, password: bytes) -> bool:
        """
        Record the call, wait for L{release}, and verify.

        @param hashed: The hash.
        @param password: The password.

        @return: Whether they match.
        """
        self.calls.append((hashed, password))
        self.threads.append(threading.current_thread())
        self.release.wait(30)
        return self._verify(hashed, password)


class HashedPasswordCheckerTests(TestCase):
    """
    Tests for L{HashedPasswordChecker}, with a real thread pool and reactor.
    """

    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=0, maxthreads=2, name="test_users")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.alice = bcryptHash(b"pw")
        self.users = UsersFile("users", {b"alice": self.alice})

    def checker(
        self,
        verify: Callable[[bytes, bytes], bool] = verifyPassword,
        maxPending: int = 64,
    ) -> HashedPasswordChecker:
        """
        Make a checker of L{users} that verifies in L{pool}.

        @param verify: Its verifier.
        @param maxPending: Its limit of pending verifications.

        @return: The checker.
        """
        return HashedPasswordChecker(
            self.users, REACTOR, self.pool, maxPending=maxPending, verify=verify
        )

    def test_interface(self) -> None:
        """
        L{HashedPasswordChecker} provides L{ICredentialsChecker}.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker()))

    async def test_rightPassword(self) -> None:
        """
        The right password gives the username as the avatar ID.
        """
        checker = self.checker()
        result = await checker.requestAvatarId(UsernamePassword(b"alice", b"pw"))
        self.assertEqual(result, b"alice")
        self.assertEqual(checker.pending, 0)

    async def test_textCredentials(self) -> None:
        """
        Credentials given as text are checked as their UTF-8 bytes.
        """
        checker = self.checker()
        credentials = UsernamePassword("alice", "pw")  # type: ignore[arg-type]
        self.assertEqual(await checker.requestAvatarId(credentials), b"alice")

    async def test_wrongPassword(self) -> None:
        """
        A wrong password fails with L{UnauthorizedLogin}.
        """
        checker = self.checker()
        await self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"alice", b"pW")),
            UnauthorizedLogin,
        )
        self.assertEqual(checker.pending, 0)

    async def test_unknownUser(self) -> None:
        """
        An unknown user fails with L{UnauthorizedLogin}, after a
        verification against a dummy hash of the users' kind.
        """
        verifier = RecordingVerifier()
        checker = self.checker(verifier)
        await self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"mallory", b"pw")),
            UnauthorizedLogin,
        )
        [(hashed, password)] = verifier.calls
        self.assertEqual(password, b"pw")
        self.assertNotEqual(hashed, self.alice)
        self.assertEqual(hashed[:7], self.alice[:7])

    async def test_unknownUserNeverMatches(self) -> None:
        """
        An unknown user fails even if the dummy hash were to match.
        """
        checker = self.checker(lambda hashed, password: True)
        await self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"mallory", b"pw")),
            UnauthorizedLogin,
        )

    async def test_verifiesInThread(self) -> None:
        """
        Passwords are verified in the thread pool, not the reactor thread.
        """
        verifier = RecordingVerifier()
        checker = self.checker(verifier)
        await checker.requestAvatarId(UsernamePassword(b"alice", b"pw"))
        [thread] = verifier.threads
        self.assertIsNot(thread, threading.current_thread())
        self.assertIsNot(thread, threading.main_thread())
        self.assertIn(thread, self.pool.threads)

    async def test_tooManyPending(self) -> None:
        """
        With C{maxPending} verifications queued or running, another login
        fails at once; once they end, logins are checked again.
        """
        verifier = RecordingVerifier(blocked=True)
        self.addCleanup(verifier.release.set)
        checker = self.checker(verifier, maxPending=2)
        first = checker.requestAvatarId(UsernamePassword(b"alice", b"pw"))
        second = checker.requestAvatarId(UsernamePassword(b"alice", b"no"))
        self.assertEqual(checker.pending, 2)
        refused = checker.requestAvatarId(UsernamePassword(b"alice", b"pw"))
        failure = self.failureResultOf(refused, UnauthorizedLogin)
        self.assertEqual(str(failure.value), "too many logins being checked")
        self.assertNoResult(first)
        verifier.release.set()
        self.assertEqual(await first, b"alice")
        await self.assertFailure(second, UnauthorizedLogin)
        self.assertEqual(checker.pending, 0)
        again = checker.requestAvatarId(UsernamePassword(b"alice", b"pw"))
        self.assertEqual(await again, b"alice")
        self.assertEqual(len(verifier.calls), 3)

    async def test_replace(self) -> None:
        """
        L{HashedPasswordChecker.replace} takes effect for the next login; a
        login being checked finishes against the users it started with.
        """
        verifier = RecordingVerifier(blocked=True)
        self.addCleanup(verifier.release.set)
        checker = self.checker(verifier)
        started = checker.requestAvatarId(UsernamePassword(b"alice", b"pw"))
        newUsers = UsersFile("users", {b"bob": argon2Hash(b"new")})
        checker.replace(newUsers)
        self.assertIs(checker.users, newUsers)
        verifier.release.set()
        self.assertEqual(await started, b"alice")
        self.assertEqual(
            await checker.requestAvatarId(UsernamePassword(b"bob", b"new")), b"bob"
        )
        await self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"alice", b"pw")),
            UnauthorizedLogin,
        )
        # The dummy hash follows the new users' kind.
        self.assertTrue(verifier.calls[-1][0].startswith(b"$argon2id$"))

    async def test_verifierFails(self) -> None:
        """
        If verifying raises, the login fails with L{UnauthorizedLogin} and
        the error is logged.
        """

        def broken(hashed: bytes, password: bytes) -> bool:
            raise RuntimeError("broken verifier")

        checker = self.checker(broken)
        await self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"alice", b"pw")),
            UnauthorizedLogin,
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(checker.pending, 0)

    async def test_portal(self) -> None:
        """
        Through a twisted.cred portal with L{SOCKSRealm}, the right password
        logs in as a L{SOCKSUser} of that name; a wrong one is refused.
        """
        portal = Portal(SOCKSRealm(), [self.checker()])
        interface, avatar, logout = await portal.login(
            UsernamePassword(b"alice", b"pw"), None, ISOCKSUser
        )
        self.assertIs(interface, ISOCKSUser)
        assert isinstance(avatar, SOCKSUser)
        self.assertEqual(avatar.username, b"alice")
        logout()
        await self.assertFailure(
            portalFor([self.checker()]).login(
                UsernamePassword(b"alice", b"pW"), None, ISOCKSUser
            ),
            UnauthorizedLogin,
        )


class StartThreadPoolTests(SynchronousTestCase):
    """
    Tests for L{startThreadPool}.
    """

    def test_lifecycle(self) -> None:
        """
        The pool starts when the reactor runs and stops before it shuts
        down.
        """
        reactor = MemoryReactor()
        pool = startThreadPool(reactor, 3)

        def stopIfRunning() -> None:
            if not pool.joined:
                pool.stop()

        self.addCleanup(stopIfRunning)
        self.assertEqual(pool.max, 3)
        self.assertFalse(pool.started)
        reactor.run()
        self.assertTrue(pool.started)
        [(stop, args, kwargs)] = reactor.triggers["before"]["shutdown"]
        stop(*args, **kwargs)
        self.assertTrue(pool.joined)


class PasswdToolTests(SynchronousTestCase):
    """
    Tests for C{python -m socks_twisted.passwd}.
    """

    def passwd(self, *args: str, stdin: bytes | None = None) -> tuple[int, str]:
        """
        Run the tool in this process, with fast hashing.

        @param args: Its arguments.
        @param stdin: What C{--stdin} reads.

        @return: Its exit status and what it wrote to stderr.
        """
        stderr = io.StringIO()
        status = main(
            list(args),
            stdin=io.BytesIO(stdin) if stdin is not None else None,
            stderr=stderr,
            getpass=self.fail,
            hasher=FAST_ARGON2,
        )
        return status, stderr.getvalue()

    def assertError(self, result: tuple[int, str], fragment: str) -> None:
        """
        Assert that the tool failed with status 2 and a one-line message.

        @param result: What L{passwd} returned.
        @param fragment: What the message must contain.
        """
        status, output = result
        self.assertEqual(status, 2)
        self.assertEqual(output.count("\n"), 1, output)
        self.assertIn(fragment, output)

    def test_add(self) -> None:
        """
        A user is added to a new file, created with mode 0600.
        """
        path = self.mktemp()
        status, output = self.passwd("--stdin", path, "alice", stdin=b"pw\r\n")
        self.assertEqual(status, 0, output)
        self.assertEqual(output, f"added user 'alice' to {path}\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        users = UsersFile.load(path)
        self.assertTrue(verifyPassword(users.hashes[b"alice"], b"pw"))

    def test_prompts(self) -> None:
        """
        Without C{--stdin}, the password is asked for twice.
        """
        prompts: list[str] = []

        def getpass(prompt: str) -> str:
            prompts.append(prompt)
            return "p\u00e4ss"

        path = self.mktemp()
        status = main([path, "alice"], stderr=io.StringIO(), getpass=getpass)
        self.assertEqual(status, 0)
        self.assertEqual(prompts, ["New password: ", "Re-type new password: "])
        users = UsersFile.load(path)
        self.assertTrue(verifyPassword(users.hashes[b"alice"], "p\u00e4ss".encode()))

    def test_defaultHasher(self) -> None:
        """
        The tool hashes with argon2-cffi's default parameters.
        """
        path = self.mktemp()
        main(
            ["--stdin", path, "alice"], stdin=io.BytesIO(b"pw\n"), stderr=io.StringIO()
        )
        self.assertTrue(
            UsersFile.load(path)
            .hashes[b"alice"]
            .startswith(b"$argon2id$v=19$m=65536,t=3,p=4$")
        )

    def test_mismatch(self) -> None:
        """
        Two different entries are refused, and nothing is written.
        """
        answers = iter(["one", "two"])
        path = self.mktemp()
        stderr = io.StringIO()
        status = main(
            [path, "alice"], stderr=stderr, getpass=lambda prompt: next(answers)
        )
        self.assertError((status, stderr.getvalue()), "do not match")
        self.assertFalse(os.path.exists(path))

    def test_change(self) -> None:
        """
        Changing a user's password replaces the hash on its line and keeps
        every other line as it was, and the file's mode.
        """
        old = bcryptHash(b"old")
        before = (
            b"# users\r\n\nbob:" + bcryptHash(b"b") + b"\r\nalice:" + old + b"\r\n# end"
        )
        path = writeUsers(self, before)
        os.chmod(path, 0o640)
        status, output = self.passwd("--stdin", path, "alice", stdin=b"new\n")
        self.assertEqual(status, 0, output)
        self.assertEqual(output, f"changed the password of user 'alice' in {path}\n")
        with open(path, "rb") as f:
            after = f.read()
        self.assertNotIn(old, after)
        beforeLines, afterLines = before.split(b"\n"), after.split(b"\n")
        self.assertEqual(len(afterLines), len(beforeLines))
        for index, (was, now) in enumerate(zip(beforeLines, afterLines, strict=True)):
            if index == 3:
                self.assertTrue(now.startswith(b"alice:$argon2id$"))
                self.assertTrue(now.endswith(b"\r"))
            else:
                self.assertEqual(was, now)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        users = UsersFile.load(path)
        self.assertTrue(verifyPassword(users.hashes[b"alice"], b"new"))
        self.assertEqual(
            os.listdir(os.path.dirname(os.path.abspath(path))).count(
                os.path.basename(path)
            ),
            1,
        )

    def test_appendAfterLastLine(self) -> None:
        """
        A user added to a file whose last line has no line ending gets a line
        of its own.
        """
        bob = bcryptHash(b"b")
        path = writeUsers(self, b"bob:" + bob)
        self.assertEqual(self.passwd("--stdin", path, "alice", stdin=b"pw")[0], 0)
        self.assertEqual(list(UsersFile.load(path).hashes), [b"bob", b"alice"])

    def test_symlink(self) -> None:
        """
        A users file reached through a symbolic link is changed in place;
        the link stays.
        """
        target = writeUsers(self, b"")
        link = self.mktemp()
        os.symlink(os.path.abspath(target), link)
        self.assertEqual(self.passwd("--stdin", link, "alice", stdin=b"pw")[0], 0)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(list(UsersFile.load(target).hashes), [b"alice"])

    def test_delete(self) -> None:
        """
        C{-D} deletes a user; deleting an unknown one is an error.
        """
        path = writeUsers(
            self, b"alice:" + bcryptHash(b"a") + b"\nbob:" + bcryptHash(b"b") + b"\n"
        )
        self.assertEqual(self.passwd("-D", path, "alice")[0], 0)
        self.assertEqual(list(UsersFile.load(path).hashes), [b"bob"])
        self.assertError(self.passwd("-D", path, "alice"), "no user 'alice'")
        self.assertError(self.passwd("-D", self.mktemp(), "bob"), "no such file")

    def test_badInput(self) -> None:
        """
        Bad names, passwords and files are refused with one line, and exit
        status 2.
        """
        path = self.mktemp()
        self.assertError(self.passwd("--stdin", path, "a:b", stdin=b"pw"), "':'")
        self.assertError(self.passwd("--stdin", path, "", stdin=b"pw"), "name is empty")
        self.assertError(
            self.passwd("--stdin", path, "alice", stdin=b""), "no password"
        )
        self.assertError(
            self.passwd("--stdin", path, "alice", stdin=b"\n"), "password is empty"
        )
        self.assertError(
            self.passwd("--stdin", path, "alice", stdin=b"p" * 256), "255 bytes"
        )
        self.assertFalse(os.path.exists(path))
        missing = os.path.join(self.mktemp(), "users")
        self.assertError(
            self.passwd("--stdin", missing, "alice", stdin=b"pw"), "cannot write it"
        )

    def test_duplicateUser(self) -> None:
        """
        A file in which the user appears twice is not changed.
        """
        content = b"alice:" + bcryptHash(b"a") + b"\nalice:" + bcryptHash(b"b")
        path = writeUsers(self, content)
        self.assertError(
            self.passwd("--stdin", path, "alice", stdin=b"pw"), "lines 1, 2"
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), content)

    def test_badUsage(self) -> None:
        """
        Bad usage exits with status 2 and one line on stderr, without a
        traceback.
        """
        for args in [(), ("--stdin", "-D", "users", "alice"), ("--bogus", "f", "u")]:
            result = runPasswd(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertEqual(result.stderr.count(b"\n"), 1, result.stderr)
            self.assertIn(b"(see --help)", result.stderr)
