"""
Add, change or delete a user of a users file (see L{socks_twisted.users}).

Usage::

    python -m socks_twisted.passwd FILE USER           # prompts twice
    python -m socks_twisted.passwd --stdin FILE USER   # for scripts
    python -m socks_twisted.passwd -D FILE USER        # deletes USER

Without C{--stdin} the password is asked for twice on the terminal, without
echo.  With C{--stdin} it is the first line of standard input (without its
line ending), as in C{printf '%s\\n' "$PASSWORD" | python -m
socks_twisted.passwd --stdin FILE USER}; nothing is prompted for.

The password is hashed with argon2id, with argon2-cffi's default parameters
(RFC 9106's low-memory profile: 64 MiB, 3 passes, 4 lanes).  The other lines
of the file, comments included, are kept as they are.  The file is created
with mode 0600 if it does not exist; otherwise it is replaced atomically (a
new file in the same directory, renamed over it) with the same mode and,
where permitted, the same owner.

Errors are one line on standard error, and exit status 2.
"""

from __future__ import annotations

import argparse
import getpass as _getpass
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import BinaryIO, NoReturn, TextIO

from argon2 import PasswordHasher

from .users import MAX_USERNAME

__all__ = ["PasswdError", "deleteUser", "hashPassword", "main", "setPassword"]

#: The longest password RFC 1929 can carry (its PLEN is one byte).
MAX_PASSWORD = 255

#: The mode of a users file this tool creates: the hashes are for its owner
#: (the server's user) only.
NEW_FILE_MODE = 0o600


class PasswdError(Exception):
    """
    The users file cannot be changed as asked.  The message is one line.
    """


def hashPassword(password: bytes, hasher: PasswordHasher | None = None) -> bytes:
    """
    Hash a password for a users file.

    @param password: The password.
    @param hasher: The hasher; by default argon2-cffi's, with its default
        parameters (RFC 9106 low-memory argon2id).

    @return: The argon2id hash.
    """
    if hasher is None:
        hasher = PasswordHasher()
    return hasher.hash(password).encode("ascii")


def _checkUsername(username: bytes) -> None:
    """
    Refuse a username that a users file or RFC 1929 cannot hold.

    @param username: The name.

    @raise PasswdError: If it is empty, too long, or has a colon or a line
        break.
    """
    if not username:
        raise PasswdError("the user name is empty")
    if len(username) > MAX_USERNAME:
        raise PasswdError(
            f"the user name is longer than {MAX_USERNAME} bytes, "
            "which RFC 1929 cannot carry"
        )
    if b":" in username or b"\n" in username or b"\r" in username:
        raise PasswdError("the user name must not hold ':' or a line break")
    if username.lstrip().startswith(b"#"):
        raise PasswdError("the user name must not start with '#'")


def _readLines(path: str) -> list[bytes] | None:
    """
    Read a users file as lines.

    @param path: The file.

    @return: Its lines, each with its line ending, or C{None} if it does not
        exist.

    @raise PasswdError: If it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise PasswdError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise PasswdError(f"{path}: cannot read it ({e.strerror})") from None


def _userLines(lines: list[bytes], username: bytes) -> list[int]:
    """
    Find the lines of a user.

    @param lines: The file's lines.
    @param username: The user.

    @return: The indexes of the lines of C{username}.
    """
    found = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        if line.partition(b":")[0] == username:
            found.append(index)
    return found


def _writeAtomically(path: str, content: bytes) -> None:
    """
    Replace a file's content as one step: readers see the old file or the
    new one, never a part of it.

    @param path: The file (a symbolic link is followed: its target is
        replaced).
    @param content: The new content.

    @raise PasswdError: If it cannot be written.
    """
    target = os.path.realpath(path)
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise PasswdError(f"{path}: cannot write it ({e.strerror})") from None
    directory = os.path.dirname(target)
    try:
        # The temporary file must be in the same directory (the same file
        # system) for os.replace to be atomic; mkstemp makes it 0600.
        fd, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory
        )
    except OSError as e:
        raise PasswdError(f"{path}: cannot write it ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if existing is not None:
                try:
                    # Root editing the file of the server's user must not
                    # leave it owned by root, unreadable to the server.
                    os.fchown(f.fileno(), existing.st_uid, existing.st_gid)
                except PermissionError:
                    pass
                os.fchmod(f.fileno(), existing.st_mode & 0o7777)
            else:
                os.fchmod(f.fileno(), NEW_FILE_MODE)
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except OSError as e:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise PasswdError(f"{path}: cannot write it ({e.strerror})") from None


def setPassword(path: str, username: bytes, hashed: bytes) -> bool:
    """
    Add a user to a users file, or change the hash of one already there;
    create the file if need be.

    @param path: The users file.
    @param username: The user.
    @param hashed: The password's hash (see L{hashPassword}).

    @return: Whether the user was already there.

    @raise PasswdError: If the name cannot be used, the user appears more
        than once, or the file cannot be read or written.
    """
    _checkUsername(username)
    lines = _readLines(path) or []
    found = _userLines(lines, username)
    if len(found) > 1:
        raise PasswdError(_duplicate(path, username, found))
    newLine = username + b":" + hashed
    if found:
        index = found[0]
        old = lines[index]
        # Keep the line's own ending.
        ending = old[len(old.rstrip(b"\r\n")) :]
        lines[index] = newLine + ending
    else:
        if lines and not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        lines.append(newLine + b"\n")
    _writeAtomically(path, b"".join(lines))
    return bool(found)


def deleteUser(path: str, username: bytes) -> None:
    """
    Remove a user from a users file.

    @param path: The users file.
    @param username: The user.

    @raise PasswdError: If the file or the user is not there, or the file
        cannot be read or written.
    """
    lines = _readLines(path)
    if lines is None:
        raise PasswdError(f"{path}: no such file")
    found = _userLines(lines, username)
    if not found:
        raise PasswdError(f"{path}: no user {_show(username)}")
    for index in reversed(found):
        del lines[index]
    _writeAtomically(path, b"".join(lines))


def _show(username: bytes) -> str:
    """
    Show a username in a message.

    @param username: The name.

    @return: It, quoted.
    """
    return repr(username.decode("utf-8", "backslashreplace"))


def _duplicate(path: str, username: bytes, found: list[int]) -> str:
    """
    Describe a user that appears more than once.

    @param path: The file.
    @param username: The user.
    @param found: The indexes of its lines.

    @return: The message.
    """
    numbers = ", ".join(str(index + 1) for index in found)
    return (
        f"{path}: user {_show(username)} appears on lines {numbers}; "
        "remove all but one first"
    )


def _checkPassword(password: bytes) -> bytes:
    """
    Refuse a password RFC 1929 cannot carry.

    @param password: The password.

    @return: It.

    @raise PasswdError: If it is empty or too long.
    """
    if not password:
        raise PasswdError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise PasswdError(
            f"the password is longer than {MAX_PASSWORD} bytes, "
            "which RFC 1929 cannot carry"
        )
    return password


def _readPassword(
    stdin: BinaryIO | None,
    getpass: Callable[[str], str],
) -> bytes:
    """
    Get the new password.

    @param stdin: Where to read one line from, or C{None} to prompt twice.
    @param getpass: Prompts without echo.

    @return: The password.

    @raise PasswdError: If the input ends, the two entries differ, or the
        password is empty or too long.
    """
    if stdin is not None:
        line = stdin.readline()
        if not line:
            raise PasswdError("no password on standard input")
        return _checkPassword(line.rstrip(b"\n").removesuffix(b"\r"))
    try:
        first = getpass("New password: ")
        second = getpass("Re-type new password: ")
    except EOFError:
        raise PasswdError("no password entered") from None
    if first != second:
        raise PasswdError("the passwords do not match")
    return _checkPassword(first.encode("utf-8"))


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose errors are one line (argparse also prints the
    usage).
    """

    def error(self, message: str) -> NoReturn:
        """
        Report a usage error and exit with status 2.

        @param message: What is wrong.
        """
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    """
    @return: The parser of the command line.
    """
    parser = _Parser(
        prog="python -m socks_twisted.passwd",
        description="Add or change (or, with -D, delete) a user of a "
        "socks_twisted users file. The password is hashed with argon2id.",
    )
    parser.add_argument("file", metavar="FILE", help="the users file")
    parser.add_argument("user", metavar="USER", help="the user name")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of standard input "
        "instead of prompting for it (for scripts)",
    )
    group.add_argument(
        "-D", "--delete", action="store_true", help="delete USER from FILE"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stderr: TextIO | None = None,
    getpass: Callable[[str], str] = _getpass.getpass,
    hasher: PasswordHasher | None = None,
) -> int:
    """
    Run the tool.

    @param argv: The arguments, without the program name; C{sys.argv[1:]}
        by default.
    @param stdin: What C{--stdin} reads; C{sys.stdin}'s bytes by default.
    @param stderr: Where messages go; C{sys.stderr} by default.
    @param getpass: Prompts for a password without echo.
    @param hasher: Hashes the password; see L{hashPassword}.

    @return: The exit status: 0, or 2 after an error.
    """
    if stderr is None:
        stderr = sys.stderr
    arguments = _parser().parse_args(argv)
    path: str = arguments.file
    # As the operating system passed it: os.fsencode undoes the decoding of
    # the command line.
    username = os.fsencode(arguments.user)
    try:
        if arguments.delete:
            deleteUser(path, username)
            print(f"deleted user {_show(username)} from {path}", file=stderr)
            return 0
        _checkUsername(username)
        if arguments.stdin:
            password = _readPassword(
                stdin if stdin is not None else sys.stdin.buffer, getpass
            )
        else:
            password = _readPassword(None, getpass)
        changed = setPassword(path, username, hashPassword(password, hasher))
    except PasswdError as e:
        print(f"python -m socks_twisted.passwd: {e}", file=stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m socks_twisted.passwd: interrupted", file=stderr)
        return 2
    if changed:
        print(f"changed the password of user {_show(username)} in {path}", file=stderr)
    else:
        print(f"added user {_show(username)} to {path}", file=stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
