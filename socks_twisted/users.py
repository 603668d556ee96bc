"""
A users file of hashed passwords, and the twisted.cred checker that verifies
RFC 1929 logins against it.

The file has the format of Apache's C{htpasswd}: one C{name:hash} a line,
with blank lines and C{#} comments allowed.  Only slow, salted hashes are
accepted:

  - bcrypt, as C{htpasswd -B} writes it (C{$2y$}), or C{$2b$} / C{$2a$};
  - argon2id (C{$argon2id$}), as C{python -m socks_twisted.passwd} writes it.

Any other line (a clear-text password, Apache's C{$apr1$} MD5, C{{SHA}},
crypt(3)) is refused when the file is loaded, with a message that says how to
hash the password.

Verifying a slow hash takes tens to hundreds of milliseconds, so
L{HashedPasswordChecker} verifies in a thread pool, never in the reactor
thread: a login being checked does not stall the other sessions.
"""

from __future__ import annotations

import os
import re
import shlex
from base64 import b64encode
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import bcrypt
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_POOL_SIZE",
    "HashedPasswordChecker",
    "UsersFile",
    "UsersFileError",
    "dummyHash",
    "startThreadPool",
    "verifyPassword",
]

_log = Logger()

#: The longest username RFC 1929 can carry (its ULEN is one byte).
MAX_USERNAME = 255

#: bcrypt uses only the first 72 bytes of a password.
_BCRYPT_MAX_PASSWORD = 72

#: A complete bcrypt hash: version, two-digit cost, then 22 characters of
#: salt and 31 of digest in bcrypt's base64 alphabet.
_BCRYPT = re.compile(rb"\A\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}\Z")

#: A traditional crypt(3) DES hash: 2 characters of salt, 11 of digest.
_CRYPT_DES = re.compile(rb"\A[./A-Za-z0-9]{13}\Z")

#: Schemes htpasswd or other tools may have written, which are refused: how
#: the message names each.
_REFUSED_SCHEMES = (
    (b"$apr1$", "an Apache MD5 ($apr1$) hash"),
    (b"{SHA}", "an unsalted SHA-1 ({SHA}) hash"),
    (b"$1$", "a crypt(3) MD5 ($1$) hash"),
    (b"$5$", "a crypt(3) SHA-256 ($5$) hash"),
    (b"$6$", "a crypt(3) SHA-512 ($6$) hash"),
    (b"$argon2i$", "an argon2i hash (only argon2id is accepted)"),
    (b"$argon2d$", "an argon2d hash (only argon2id is accepted)"),
)

#: Verifications queued or running at once, by default, before further
#: logins are refused at once.
DEFAULT_MAX_PENDING = 64

#: Threads that verify passwords, by default.  Each argon2id verification
#: with argon2-cffi's defaults holds 64 MiB while it runs.
DEFAULT_POOL_SIZE = 4


class UsersFileError(ValueError):
    """
    A users file cannot be used.  The message is one line that names the
    file (and the line, if one is at fault).
    """


def _showName(name: bytes) -> str:
    """
    Show a username in a message.

    @param name: The name's bytes, as in the file.

    @return: The name, quoted, with bytes that are not UTF-8 escaped.
    """
    return repr(name.decode("utf-8", "backslashreplace"))


def _hashProblem(hashed: bytes) -> str | None:
    """
    Find why a hash from a users file cannot be used.

    @param hashed: The part of a line after the first colon.

    @return: What the hash is, as a noun phrase for a message, or C{None} if
        it is an accepted hash.
    """
    if hashed.startswith((b"$2y$", b"$2b$", b"$2a$")):
        return None if _BCRYPT.match(hashed) else "a malformed bcrypt hash"
    if hashed.startswith(b"$argon2id$"):
        try:
            extract_parameters(hashed.decode("ascii"))
        except (UnicodeDecodeError, InvalidHashError):
            return "a malformed argon2id hash"
        return None
    for prefix, description in _REFUSED_SCHEMES:
        if hashed.startswith(prefix):
            return description
    if _CRYPT_DES.match(hashed):
        # Thirteen such characters may as well be a clear-text password.
        return "a crypt(3) DES hash or a clear-text password"
    # Never echo the text: it is most likely a password.
    return "a clear-text password or an unknown hash scheme"


def _howToHash(path: str, name: bytes) -> str:
    """
    Say how to put a hashed password in a users file.

    @param path: The file.
    @param name: The user.

    @return: The commands, quoted for a shell.
    """
    arguments = f"{shlex.quote(path)} {shlex.quote(os.fsdecode(name))}"
    return (
        f"hash it with: python -m socks_twisted.passwd {arguments} "
        f"(or htpasswd -B {arguments})"
    )


@dataclass(frozen=True)
class UsersFile:
    """
    The users of a users file, and their password hashes.

    @ivar path: The file they were read from.
    @ivar hashes: Username (bytes, as in the file) to its bcrypt or argon2id
        hash (bytes), in the file's order.
    """

    path: str
    # A mapping cannot be hashed: a UsersFile hashes as its path.
    hashes: Mapping[bytes, bytes] = field(hash=False)

    @classmethod
    def load(cls, path: str) -> UsersFile:
        """
        Read and check a users file.

        @param path: The file's path.

        @return: Its users.

        @raise UsersFileError: If the file is missing or unreadable, or a line
            is not C{name:hash} with an accepted hash, or a user appears
            twice.  An empty file (or one of only comments) is accepted: it
            has no users, so every login fails.
        """
        try:
            with open(path, "rb") as f:
                content = f.read()
        except FileNotFoundError:
            raise UsersFileError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UsersFileError(f"{path}: is a directory, not a file") from None
        except OSError as e:
            raise UsersFileError(f"{path}: cannot read it ({e.strerror})") from None
        hashes: dict[bytes, bytes] = {}
        firstLine: dict[bytes, int] = {}
        for number, rawLine in enumerate(content.split(b"\n"), start=1):
            # Tolerate files edited on Windows, and trailing blanks.
            line = rawLine.rstrip(b"\r \t")
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            where = f"{path}, line {number}"
            name, colon, hashed = line.partition(b":")
            if not colon or not name:
                # The line is not shown: it may be a password.
                raise UsersFileError(
                    f"{where}: not a name:hash line; add users with "
                    f"python -m socks_twisted.passwd {path} NAME"
                )
            shown = _showName(name)
            if len(name) > MAX_USERNAME:
                raise UsersFileError(
                    f"{where}: user name longer than {MAX_USERNAME} bytes, "
                    "which RFC 1929 cannot carry"
                )
            problem = _hashProblem(hashed)
            if problem is not None:
                raise UsersFileError(
                    f"{where}: the password of user {shown} is {problem}, "
                    f"which is not accepted; {_howToHash(path, name)}"
                )
            if name in hashes:
                raise UsersFileError(
                    f"{where}: user {shown} appears again "
                    f"(first on line {firstLine[name]})"
                )
            hashes[name] = hashed
            firstLine[name] = number
        return cls(path, MappingProxyType(hashes))


def verifyPassword(hashed: bytes, password: bytes) -> bool:
    """
    Check a password against a bcrypt or argon2id hash, in constant time
    with respect to the password.  This is slow (it is meant to be), so
    call it outside the reactor thread.

    @param hashed: A hash that L{UsersFile.load} accepted.
    @param password: The password to check.

    @return: Whether the password matches.
    """
    if hashed.startswith(b"$2"):
        if hashed.startswith(b"$2y$"):
            # $2y$ (what htpasswd writes) is crypt_blowfish's name for the
            # same algorithm as $2b$.  bcrypt 5 reads $2y$ itself; naming it
            # $2b$ keeps that from depending on the release installed.
            hashed = b"$2b$" + hashed[4:]
        # bcrypt ignores what follows the 72nd byte, and htpasswd hashed
        # only those; bcrypt 5 raises instead of truncating.
        password = password[:_BCRYPT_MAX_PASSWORD]
        try:
            return bcrypt.checkpw(password, hashed)
        except ValueError:
            return False
    try:
        # The hash carries its own parameters: the hasher's do not matter.
        return PasswordHasher().verify(hashed, password)
    except (VerificationError, InvalidHashError):
        # VerifyMismatchError, the usual wrong password, is a
        # VerificationError.
        return False


def _hashKind(hashed: bytes) -> bytes:
    """
    Describe what the time to verify a hash depends on.

    @param hashed: An accepted hash.

    @return: The hash's algorithm and parameters (and for argon2id, the
        lengths of salt and digest): equal for two hashes that take as long
        to verify.
    """
    if hashed.startswith(b"$2"):
        # "$2y$12$"
        return hashed[:7]
    # "$argon2id$v=19$m=65536,t=3,p=4$SALT$DIGEST"
    head, salt, digest = hashed.rsplit(b"$", 2)
    return b"%s$%d$%d" % (head, len(salt), len(digest))


def dummyHash(users: UsersFile) -> bytes:
    """
    Make a hash for logins as an unknown user: one that takes as long to
    verify as most of the users' hashes (whatever it is verified against is
    refused anyway).

    @param users: The users.

    @return: A bcrypt or argon2id hash with random salt and digest.  For a
        file of no users, an argon2id hash with argon2-cffi's default
        parameters.
    """
    kinds = Counter(_hashKind(hashed) for hashed in users.hashes.values())
    if not kinds:
        hasher = PasswordHasher()
        return b"$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s" % (
            hasher.memory_cost,
            hasher.time_cost,
            hasher.parallelism,
            _b64Random(hasher.salt_len),
            _b64Random(hasher.hash_len),
        )
    # Counter keeps insertion order among equal counts: ties go to the
    # earliest user in the file.
    kind = kinds.most_common(1)[0][0]
    if kind.startswith(b"$2"):
        # bcrypt refuses at once (and so quickly) a salt whose last
        # character has bits set that its 16 bytes do not use: gensalt makes
        # a well-formed one.  The digest is copied from a user's hash; the
        # digests of bcrypt are only compared, and with another salt no
        # password is expected to give it (nor would it be accepted: the
        # user is unknown).
        salt = bcrypt.gensalt(rounds=int(kind[4:6]))[7:]
        example = next(h for h in users.hashes.values() if h.startswith(kind))
        return kind + salt + example[29:]
    head, saltLength, digestLength = kind.rsplit(b"$", 2)
    # n bytes encode as ceil(4n / 3) characters; the lengths in the kind
    # are such encodings (or extract_parameters would have refused them).
    return b"%s$%s$%s" % (
        head,
        _b64Random(int(saltLength) * 3 // 4),
        _b64Random(int(digestLength) * 3 // 4),
    )


def _b64Random(size: int) -> bytes:
    """
    Make random bytes, encoded as argon2's PHC strings encode them.

    @param size: How many bytes.

    @return: Their standard base64 encoding, without padding.
    """
    return b64encode(os.urandom(size)).rstrip(b"=")


@implementer(ICredentialsChecker)
class HashedPasswordChecker:
    """
    Check RFC 1929 usernames and passwords against a L{UsersFile}.

    Each password is verified in a thread of C{threadpool}, so that a slow
    hash never stalls the reactor.  A login as an unknown user is verified
    against a dummy hash of the same kind as the users' (see L{dummyHash}),
    so that how long a login takes does not tell which users exist.

    @ivar users: The users now checked against.
    @ivar pending: How many verifications are queued or running.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        users: UsersFile,
        reactor: IReactorFromThreads,
        threadpool: ThreadPool,
        maxPending: int = DEFAULT_MAX_PENDING,
        verify: Callable[[bytes, bytes], bool] = verifyPassword,
    ) -> None:
        """
        @param users: The users to check against.
        @param reactor: The reactor whose thread the results are delivered in.
        @param threadpool: The threads that verify passwords; see
            L{startThreadPool}.
        @param maxPending: How many verifications may be queued or running
            at once; a login beyond them fails at once, rather than queueing
            without bound while the pool is busy (as during a brute-force
            attempt).
        @param verify: Checks a password against a hash, as
            L{verifyPassword} (the default) does; called in C{threadpool}.
        """
        self._reactor = reactor
        self._threadpool = threadpool
        self._maxPending = maxPending
        self._verify = verify
        self.pending = 0
        self.replace(users)

    def replace(self, users: UsersFile) -> None:
        """
        Check later logins against other users, as when the users file is
        reloaded.  Logins being checked finish against the users they
        started with.  Call it in the reactor thread.

        @param users: The new users.
        """
        self.users = users
        self._dummy = dummyHash(users)

    def requestAvatarId(
        self, credentials: IUsernamePassword
    ) -> Deferred[bytes | tuple[()]]:
        """
        Verify a username and password.

        @param credentials: What the client sent.

        @return: A L{Deferred} that fires with the username (bytes), or fails
            with L{UnauthorizedLogin} if the user is unknown or the password
            wrong, or at once if C{maxPending} verifications are already
            queued or running.
        """
        if self.pending >= self._maxPending:
            return fail(UnauthorizedLogin("too many logins being checked"))
        username = _asBytes(credentials.username)
        password = _asBytes(credentials.password)
        # Looked up now, in the reactor thread: replace() cannot change it
        # under the verification.
        hashed = self.users.hashes.get(username)
        known = hashed is not None
        self.pending += 1
        verifying = deferToThreadPool(
            self._reactor,
            self._threadpool,
            self._verify,
            hashed if hashed is not None else self._dummy,
            password,
        )

        # ICredentialsChecker's avatar IDs may also be () (anonymous); the
        # Deferred is typed so, though this one fires with bytes only.
        def done(matches: bool) -> bytes | tuple[()]:
            if known and matches:
                return username
            raise UnauthorizedLogin()

        def broken(failure: Failure) -> bytes | tuple[()]:
            # A bug, not a wrong password; the client must still be refused.
            _log.failure("verifying a password failed", failure)
            raise UnauthorizedLogin()

        def finished(
            result: bytes | tuple[()] | Failure,
        ) -> bytes | tuple[()] | Failure:
            self.pending -= 1
            return result

        checked: Deferred[bytes | tuple[()]] = verifying.addCallbacks(done, broken)
        checked.addBoth(finished)
        return checked


def _asBytes(value: bytes | str) -> bytes:
    """
    Credentials from the wire are bytes; accept text from other callers.

    @param value: A username or password.

    @return: Its bytes (UTF-8 for text).
    """
    return value.encode("utf-8") if isinstance(value, str) else value


def startThreadPool(reactor: IReactorCore, size: int = DEFAULT_POOL_SIZE) -> ThreadPool:
    """
    Make the thread pool a L{HashedPasswordChecker} verifies passwords in,
    tied to the reactor's life: it starts when the reactor runs (at once if
    it already does; not before, so that no thread exists when C{twistd}
    forks into the background) and stops before the reactor shuts down,
    after its running verifications end.

    It is a pool of its own, not the reactor's: slow verifications must not
    hold up the reactor's other uses of threads, such as name resolution.

    @param reactor: The reactor.
    @param size: How many passwords may be verified at once.

    @return: The pool.
    """
    pool = ThreadPool(minthreads=0, maxthreads=size, name="socks_twisted.users")
    reactor.callWhenRunning(pool.start)
    reactor.addSystemEventTrigger("before", "shutdown", pool.stop)
    return pool
