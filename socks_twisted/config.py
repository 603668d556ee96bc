"""
The configuration file of C{twistd socks --config}: TOML, read with
C{tomllib}, of four tables.

  - C{[server]}: any long option of C{twistd socks}, under the same name
    (C{port = ["tcp:1080"]}, C{handshake-timeout = 30}); the command line
    wins.  Values are checked here only as TOML scalars or lists of them;
    the names and values are the command line's to check.
  - C{[users]}: C{file}, a users file (see L{socks_twisted.users}), relative
    to the configuration file's directory unless absolute; C{groups}, a table
    of group name to member names.
  - C{[limits]}: per-client and per-user limits; see L{Limits}.
  - C{[[rules]]}: the access rules, in order; see L{socks_twisted.policy}.

A file is read whole or not at all: any problem (an unknown table or key, a
wrong type, a bad value) is a L{ConfigError} whose one-line message names the
file, the table and the key.

This module uses no Twisted.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from types import MappingProxyType

from .policy import PolicyError, Rule, parseRules

__all__ = ["Config", "ConfigError", "Limits", "loadConfig", "parseSize"]


class ConfigError(ValueError):
    """
    A configuration file that cannot be used; the message is one line naming
    the file, the table and the key.
    """


_SIZE = re.compile(
    r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:([kKmMgGtT])(i)?)?(B)?\s*\Z"
)
_EXPONENT = {"k": 1, "m": 2, "g": 3, "t": 4}


def parseSize(value: int | str) -> int:
    """
    A rate in bytes per second, as a file writes it.

    An C{int} is bytes.  A string is a number (decimals allowed) and a unit:

      - none, or C{B}: bytes;
      - C{kB}, C{MB}, C{GB}, C{TB}: decimal, powers of 1000;
      - C{KiB}, C{MiB}, C{GiB}, C{TiB}: binary, powers of 1024.

    The prefix letter may be of either case (C{kB} and C{KB} are both 1000
    bytes), and the C{B} may be left out (C{10M}); but a C{B}, when written,
    must be upper case: C{10Mb} would be megabits, so it is refused rather
    than read as bytes.  A fraction of a byte is dropped: C{"1.0005kB"}
    is 1000.  0 means no cap.

    @raise ValueError: C{value} is negative, not a size, or a size below one
        byte but not 0.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return value
    match = _SIZE.match(value)
    if match is None:
        if value.rstrip().endswith("b"):
            raise ValueError(
                f"{value!r} is not a size: a lower-case b means bits; write "
                "bytes as B (10MB)"
            )
        raise ValueError(
            f"{value!r} is not a size (a number of bytes, or of kB, MB, GB, "
            "KiB, MiB, GiB)"
        )
    number, prefix, binary, _ = match.groups()
    base = 1024 if binary else 1000
    exponent = 0 if prefix is None else _EXPONENT[prefix.lower()]
    size = Decimal(number) * base**exponent
    result = int(size.to_integral_value(rounding=ROUND_FLOOR))
    if result == 0 and size != 0:
        # Rounded down to 0 it would mean "no cap": the opposite of intended.
        raise ValueError(f"{value!r} is less than one byte")
    return result


@dataclass(frozen=True)
class Limits:
    """
    The C{[limits]} table: C{None} for no limit (a key left out, or 0).

    @ivar sessionsPerClient: Concurrent sessions per client IP.
    @ivar sessionsPerUser: Concurrent sessions per authenticated user.
    @ivar newSessionsPerSecondPerClient: Sessions a client IP may open a
        second.
    @ivar authFailuresPerMinutePerClient: Failed logins a client IP may make
        a minute; beyond, it is refused for a back-off period.
    @ivar bandwidthPerSession: Bytes per second, each direction, per session.
    @ivar bandwidthPerUser: Bytes per second, each direction, for all the
        sessions of a user.
    """

    sessionsPerClient: int | None = None
    sessionsPerUser: int | None = None
    newSessionsPerSecondPerClient: float | None = None
    authFailuresPerMinutePerClient: int | None = None
    bandwidthPerSession: int | None = None
    bandwidthPerUser: int | None = None


@dataclass(frozen=True)
class Config:
    """
    A configuration file, read.

    @ivar path: The file's path, as given.
    @ivar server: The C{[server]} table: option name to value, as the file
        gives them (a TOML scalar or a list of them).
    @ivar usersFile: The C{[users]} file, made absolute against the
        configuration file's directory when relative.
    @ivar groups: Group name to member names.
    @ivar limits: The C{[limits]}.
    @ivar rules: The file's rules, without the built-in ones (which
        L{socks_twisted.policy.Policy} adds).
    """

    path: str
    server: Mapping[str, object] = field(default_factory=dict)
    usersFile: str | None = None
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    rules: tuple[Rule, ...] = ()

    @property
    def catchAll(self) -> bool:
        """
        Whether the file's last rule has no condition, and so replaces the
        built-in tail (L{socks_twisted.policy.Policy} tells this itself).
        """
        return bool(self.rules) and self.rules[-1].catchAll


_TABLES = ("server", "users", "limits", "rules")
_USERS_KEYS = ("file", "groups")
_COUNT_LIMITS = (
    "sessions-per-client",
    "sessions-per-user",
    "auth-failures-per-minute-per-client",
)
_RATE_LIMITS = ("new-sessions-per-second-per-client",)
_SIZE_LIMITS = ("bandwidth-per-session", "bandwidth-per-user")
_LIMIT_KEYS = (*_COUNT_LIMITS, *_RATE_LIMITS, *_SIZE_LIMITS)


def _typeName(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # dates and times


class _Reader:
    """
    Reads a parsed file, naming it in errors.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, table: str, key: str | None, problem: str) -> ConfigError:
        where = f"{self.path}: [{table}]"
        if key is not None:
            where += f" key {key!r}"
        return ConfigError(f"{where}: {problem}")

    def table(self, document: Mapping[str, object], name: str) -> dict[str, object]:
        value = document.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(
                f"{self.path}: key {name!r}: must be a table [{name}], not "
                f"{_typeName(value)}"
            )
        return value

    def checkKeys(
        self, table: str, values: Mapping[str, object], known: tuple[str, ...]
    ) -> None:
        for key in values:
            if key not in known:
                raise self.error(table, key, f"unknown key (known: {', '.join(known)})")

    def server(self, values: dict[str, object]) -> Mapping[str, object]:
        for key, value in values.items():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, str | int | float | bool):
                    raise self.error(
                        "server",
                        key,
                        f"must be a string, a number, a boolean or an array "
                        f"of them, not {_typeName(item)}"
                        + (" in an array" if isinstance(value, list) else ""),
                    )
        return MappingProxyType(dict(values))

    def users(
        self, values: dict[str, object]
    ) -> tuple[str | None, Mapping[str, frozenset[str]]]:
        self.checkKeys("users", values, _USERS_KEYS)
        usersFile = values.get("file")
        if usersFile is not None:
            if not isinstance(usersFile, str) or not usersFile:
                raise self.error(
                    "users",
                    "file",
                    f"must be a path, not {_typeName(usersFile)} {usersFile!r}",
                )
            usersFile = os.path.join(
                os.path.dirname(os.path.abspath(self.path)), usersFile
            )
        groupsTable = values.get("groups", {})
        if not isinstance(groupsTable, dict):
            raise self.error(
                "users",
                "groups",
                "must be a table of group name to an array of user names, "
                f"not {_typeName(groupsTable)}",
            )
        groups = {}
        for group, members in groupsTable.items():
            if not group or ":" in group:
                raise self.error(
                    "users", "groups", f"{group!r} is not a group name (no ':')"
                )
            if not isinstance(members, list) or not all(
                isinstance(member, str) and member and ":" not in member
                for member in members
            ):
                raise self.error(
                    "users",
                    "groups",
                    f"group {group!r} must be an array of user names",
                )
            groups[group] = frozenset(str(member) for member in members)
        return usersFile, MappingProxyType(groups)

    def limits(self, values: dict[str, object]) -> Limits:
        self.checkKeys("limits", values, _LIMIT_KEYS)
        counts: dict[str, int | None] = {}
        rates: dict[str, float | None] = {}
        sizes: dict[str, int | None] = {}
        for key, value in values.items():
            if key in _COUNT_LIMITS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise self.error(
                        "limits",
                        key,
                        f"{value!r} is not a whole number, 0 or more (0: no limit)",
                    )
                counts[key] = value or None
            elif key in _RATE_LIMITS:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise self.error(
                        "limits",
                        key,
                        f"{value!r} is not a number, 0 or more (0: no limit)",
                    )
                rates[key] = float(value) or None
            else:
                if isinstance(value, bool) or not isinstance(value, int | str):
                    raise self.error(
                        "limits",
                        key,
                        f"must be a size (10MB) or a number of bytes, not "
                        f"{_typeName(value)}",
                    )
                try:
                    size = parseSize(value)
                except ValueError as e:
                    raise self.error("limits", key, str(e)) from None
                sizes[key] = size or None
        return Limits(
            sessionsPerClient=counts.get("sessions-per-client"),
            sessionsPerUser=counts.get("sessions-per-user"),
            newSessionsPerSecondPerClient=rates.get(
                "new-sessions-per-second-per-client"
            ),
            authFailuresPerMinutePerClient=counts.get(
                "auth-failures-per-minute-per-client"
            ),
            bandwidthPerSession=sizes.get("bandwidth-per-session"),
            bandwidthPerUser=sizes.get("bandwidth-per-user"),
        )

    def read(self, document: dict[str, object]) -> Config:
        known = "[server], [users], [limits], [[rules]]"
        for name, value in document.items():
            if name in _TABLES:
                continue
            if isinstance(value, dict):
                raise ConfigError(
                    f"{self.path}: [{name}]: unknown table (known: {known})"
                )
            raise ConfigError(
                f"{self.path}: key {name!r}: unknown top-level key (settings "
                f"go in the tables {known})"
            )
        server = self.server(self.table(document, "server"))
        usersFile, groups = self.users(self.table(document, "users"))
        limits = self.limits(self.table(document, "limits"))
        rules = document.get("rules", [])
        if not isinstance(rules, list) or not all(
            isinstance(rule, dict) for rule in rules
        ):
            raise ConfigError(
                f"{self.path}: [[rules]] key 'rules': must be an array of "
                "tables, written [[rules]]"
            )
        try:
            parsed = parseRules(rules, groups, self.path)
        except PolicyError as e:
            raise ConfigError(str(e)) from None
        return Config(
            path=self.path,
            server=server,
            usersFile=usersFile,
            groups=groups,
            limits=limits,
            rules=parsed,
        )


def loadConfig(path: str) -> Config:
    """
    Read a configuration file.

    @raise ConfigError: The file cannot be read, is not TOML, or has an
        unknown table or key, a value of the wrong type, or a bad value.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 ({e.reason})") from None
    return _Reader(path).read(document)
