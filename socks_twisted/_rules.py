"""
Access rules as a file writes them: the L{Rule} they parse into, and the
parser, whose errors name the file, the rule and the key.  No Twisted here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._destinations import (
    ALL_SETS,
    Destinations,
    IPNetwork,
    normalizeName,
    parseAddress,
    unmappedNetwork,
)
from ._proxyurl import parseProxyURL

#: The SOCKS versions a rule can name, as L{Request.version} gives them.
VERSIONS = frozenset({"4", "4a", "5"})

#: The commands a rule can name, as L{Request.command} gives them.
COMMANDS = frozenset({"connect", "bind", "udp", "resolve", "resolve_ptr"})

#: The C{via} of a rule that reaches its targets directly, even when the
#: server has an C{--upstream}.
DIRECT = "direct"


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
_PORT_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?\Z")

_RULE_KEYS = (
    "action",
    "name",
    "from",
    "users",
    "versions",
    "commands",
    "to",
    "ports",
    "bind",
    "via",
)
_CONDITION_KEYS = ("from", "users", "versions", "commands", "to", "ports")


class PolicyError(ValueError):
    """
    Rules that cannot be used; the message is one line naming the file, the
    rule and the key.
    """


@dataclass(frozen=True)
class Rule:
    """
    One rule: C{None} for a condition means it matches everything.

    @ivar index: The rule's position in the file, from 1; 0 for a built-in
        rule.
    @ivar name: The rule's C{name}, shown in denial logs.
    @ivar allow: Whether the rule allows (or denies).
    @ivar clients: The client networks (C{from}).
    @ivar users: User names and C{group:NAME} references.
    @ivar versions: Some of C{"4"}, C{"4a"}, C{"5"}.
    @ivar commands: Some of C{"connect"}, C{"bind"}, C{"udp"}, C{"resolve"},
        C{"resolve_ptr"}.
    @ivar to: The destinations.
    @ivar ports: Inclusive port ranges.
    @ivar bind: The source address of the outbound connections of the
        sessions the rule allows.
    @ivar via: How the sessions the rule allows reach their targets: the
        URL of an upstream SOCKS proxy (C{socks5h://user:pw@host:port}),
        L{DIRECT}, or C{None} for the server's default (C{--upstream}, or
        direct).
    """

    index: int
    name: str | None
    allow: bool
    clients: tuple[IPNetwork, ...] | None = None
    users: frozenset[str] | None = None
    versions: frozenset[str] | None = None
    commands: frozenset[str] | None = None
    to: Destinations | None = None
    ports: tuple[tuple[int, int], ...] | None = None
    bind: str | None = None
    via: str | None = field(default=None, repr=False)

    @property
    def catchAll(self) -> bool:
        """
        Whether the rule has no condition, so matches every request.
        """
        return (
            self.clients is None
            and self.users is None
            and self.versions is None
            and self.commands is None
            and self.to is None
            and self.ports is None
        )

    def describe(self) -> str:
        """
        The rule as a log line names it: C{rule 3 ("staff web")}, C{rule 4},
        or C{default rule (deny self)} for a built-in one.
        """
        if self.index == 0:
            return f"default rule ({(self.name or '').removeprefix('default: ')})"
        if self.name is None:
            return f"rule {self.index}"
        return f'rule {self.index} ("{self.name}")'


# Parsing.


def _describeValue(value: object) -> str:
    return repr(value)


class _RuleParser:
    """
    Reads one rule table of a file.
    """

    def __init__(
        self, source: str, number: int, groups: Mapping[str, frozenset[str]]
    ) -> None:
        self.source = source
        self.number = number
        self.groups = groups

    def error(self, key: str | None, problem: str) -> PolicyError:
        where = f"{self.source}: [[rules]] #{self.number}"
        if key is not None:
            where += f" key {key!r}"
        return PolicyError(f"{where}: {problem}")

    def strings(self, key: str, value: object) -> list[str]:
        """
        A list of strings; a single string is accepted as a list of one.
        """
        items = self.items(key, value)
        for item in items:
            if not isinstance(item, str):
                raise self.error(key, f"{_describeValue(item)} is not a string")
        return [item for item in items if isinstance(item, str)]

    def items(self, key: str, value: object) -> list[object]:
        if isinstance(value, list):
            if not value:
                # An empty list would match nothing: almost surely a mistake,
                # and a rule that never matches is better removed.
                raise self.error(key, "is an empty list")
            return list(value)
        if isinstance(value, dict):
            raise self.error(key, "must be a list, not a table")
        return [value]

    def clients(self, value: object) -> tuple[IPNetwork, ...]:
        networks = []
        for item in self.strings("from", value):
            try:
                network = ipaddress.ip_network(item.strip())
            except ValueError as e:
                raise self.error(
                    "from", f"{item!r} is not a CIDR or an IP address ({e})"
                ) from None
            networks.append(unmappedNetwork(network))
        return tuple(networks)

    def users(self, value: object) -> frozenset[str]:
        users = set()
        for item in self.strings("users", value):
            if item.startswith("group:"):
                group = item.removeprefix("group:")
                if group not in self.groups:
                    raise self.error(
                        "users", f"{item!r} names no group of [users] groups"
                    )
            elif not item or ":" in item:
                raise self.error("users", f"{item!r} is not a user name")
            users.add(item)
        return frozenset(users)

    def versions(self, value: object) -> frozenset[str]:
        versions = set()
        for item in self.items("versions", value):
            text = str(item) if isinstance(item, int | str) else None
            if isinstance(item, bool) or text not in VERSIONS:
                raise self.error(
                    "versions",
                    f'{_describeValue(item)} is not a SOCKS version (4, "4a" or 5)',
                )
            assert text is not None
            versions.add(text)
        return frozenset(versions)

    def commands(self, value: object) -> frozenset[str]:
        commands = set()
        for item in self.strings("commands", value):
            if item not in COMMANDS:
                raise self.error(
                    "commands",
                    f"{item!r} is not a command (connect, bind, udp, resolve or "
                    "resolve_ptr)",
                )
            commands.add(item)
        return frozenset(commands)

    def destinations(self, value: object) -> Destinations:
        networks: list[IPNetwork] = []
        names: set[str] = set()
        suffixes: set[str] = set()
        sets: set[str] = set()
        for item in self.strings("to", value):
            entry = item.strip()
            if entry.lower() in ALL_SETS:
                sets.add(entry.lower())
                continue
            try:
                networks.append(unmappedNetwork(ipaddress.ip_network(entry)))
                continue
            except ValueError:
                pass
            suffix = entry.startswith(".")
            name = _checkName(entry[1:] if suffix else entry)
            if name is None:
                raise self.error(
                    "to",
                    f"{item!r} is not a CIDR, a name, a .suffix or a named set",
                )
            (suffixes if suffix else names).add(name)
        return Destinations(
            networks=tuple(networks),
            names=frozenset(names),
            suffixes=frozenset(suffixes),
            sets=frozenset(sets),
        )

    def ports(self, value: object) -> tuple[tuple[int, int], ...]:
        ranges = []
        for item in self.items("ports", value):
            if isinstance(item, int) and not isinstance(item, bool):
                low = high = item
            elif isinstance(item, str) and (match := _PORT_RANGE.match(item)):
                low = int(match.group(1))
                high = int(match.group(2) or low)
            else:
                raise self.error(
                    "ports",
                    f"{_describeValue(item)} is not a port or a port range "
                    '("8000-8999")',
                )
            # Port 0 is allowed: a BIND or UDP ASSOCIATE request may carry it.
            if not (0 <= low <= high <= 0xFFFF):
                raise self.error(
                    "ports",
                    f"{_describeValue(item)} is not a port (0-65535) or a "
                    "range of them from low to high",
                )
            ranges.append((low, high))
        return tuple(ranges)

    def parse(self, table: Mapping[str, object]) -> Rule:
        for key in table:
            if key not in _RULE_KEYS:
                raise self.error(key, f"unknown key (known: {', '.join(_RULE_KEYS)})")
        if "action" not in table:
            raise self.error("action", 'missing: every rule needs "allow" or "deny"')
        action = table["action"]
        if action not in ("allow", "deny"):
            raise self.error(
                "action", f'{_describeValue(action)} is not "allow" or "deny"'
            )
        allow = action == "allow"
        name = table.get("name")
        if name is not None and not isinstance(name, str):
            raise self.error("name", f"{_describeValue(name)} is not a string")
        bind = table.get("bind")
        if bind is not None:
            if not allow:
                raise self.error("bind", "only a rule that allows can set it")
            address = parseAddress(bind) if isinstance(bind, str) else None
            if address is None or "%" in str(bind):
                raise self.error("bind", f"{_describeValue(bind)} is not an IP address")
            bind = str(address)
        via = self.via(table.get("via"), allow)
        get = table.get
        return Rule(
            index=self.number,
            name=name,
            allow=allow,
            clients=None if get("from") is None else self.clients(get("from")),
            users=None if get("users") is None else self.users(get("users")),
            versions=(
                None if get("versions") is None else self.versions(get("versions"))
            ),
            commands=(
                None if get("commands") is None else self.commands(get("commands"))
            ),
            to=None if get("to") is None else self.destinations(get("to")),
            ports=None if get("ports") is None else self.ports(get("ports")),
            bind=bind,
            via=via,
        )

    def via(self, value: object, allow: bool) -> str | None:
        """
        A rule's C{via}: C{"direct"} or an upstream proxy URL, checked now
        so that a bad one is an error when the file is loaded (or reloaded),
        not when a request comes.  The message never shows the password.
        """
        if value is None:
            return None
        if not allow:
            raise self.error("via", "only a rule that allows can set it")
        if not isinstance(value, str):
            raise self.error("via", f"{type(value).__name__} is not a proxy URL")
        if value.strip().lower() == DIRECT:
            return DIRECT
        try:
            parseProxyURL(value)
        except ValueError as e:
            raise self.error("via", f'not "direct" or a proxy URL: {e}') from None
        return value.strip()


def _checkName(text: str) -> str | None:
    """
    The normalized form of a host name (lower case, no trailing dot,
    IDNA-encoded), or C{None} if C{text} is not one.
    """
    try:
        name = text.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    name = normalizeName(name)
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    # A name whose last label is a number is a mistyped IP address
    # ("10.0.0.256"): no top-level domain is numeric.
    if labels[-1].isdigit():
        return None
    return name


def parseRules(
    rules: list[dict[str, object]],
    groups: Mapping[str, frozenset[str]],
    source: str,
) -> tuple[Rule, ...]:
    """
    Read the C{[[rules]]} tables of a file.

    @param rules: The tables, in order, as C{tomllib} reads them.
    @param groups: The groups that C{group:NAME} may name.
    @param source: The file's path, for messages.

    @raise PolicyError: A rule has an unknown key, a value of the wrong
        type, a bad value, or names a missing group; or a catch-all rule is
        not the last, so the rules after it could never match.
    """
    if not isinstance(rules, list):
        raise PolicyError(f"{source}: [[rules]]: must be an array of tables")
    parsed = []
    for number, table in enumerate(rules, 1):
        parser = _RuleParser(source, number, groups)
        if not isinstance(table, dict):
            raise parser.error(None, "must be a table")
        parsed.append(parser.parse(table))
    for rule in parsed[:-1]:
        if rule.catchAll:
            raise PolicyError(
                f"{source}: [[rules]] #{rule.index}: has no condition, so it "
                f"matches every request and rules #{rule.index + 1} to "
                f"#{len(parsed)} can never match"
            )
    return tuple(parsed)
