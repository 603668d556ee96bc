"""
Access rules: which client may ask for what, and the built-in rules that
keep the proxy from relaying into places it should not.

A rule allows or denies; the first rule that matches a request decides.
Each condition of a rule is optional, and a missing one matches everything:

  - C{clients} (C{from} in the file): client addresses, as CIDRs;
  - C{users}: authenticated user names and C{group:NAME} references;
  - C{versions}: C{"4"}, C{"4a"}, C{"5"};
  - C{commands}: C{"connect"}, C{"bind"}, C{"udp"};
  - C{to}: destinations (L{Destinations});
  - C{ports}: destination ports and port ranges.

How destinations match:

  - An IPv4-mapped IPv6 address (C{::ffff:127.0.0.1}), in a request or in a
    CIDR of the file, is the IPv4 address it carries.
  - Names compare case-insensitively and without a trailing dot.  A
    C{.suffix} entry matches the name itself and every name below it, as
    Dante does: C{.example.com} matches C{example.com} and
    C{a.b.example.com}, but not C{badexample.com}.
  - A bare word equal (in any case) to a named set is that set: C{loopback},
    C{private}, C{link-local}, C{multicast}, C{unspecified} and C{self} (the
    server's own listening addresses, with their ports).  To name a host
    called C{loopback}, write it with a trailing dot: C{loopback.}.

Before a name is resolved, a rule whose C{to} could only be decided by the
address leaves the request undetermined (L{Decision.allowed} is L{None}): the
caller resolves the name and asks again for each address.  A rule that
certainly denies still decides early when every undetermined rule before it
denies too, since the outcome is a denial whatever the address.  As the
built-in denial of C{self} comes first and any name may resolve to the
server's own address, a name is never allowed before it is resolved: only
denied, or left undetermined.

The built-in rules: the server's own addresses are always denied (the rule
comes first, so no rule of the file can allow them); then, after the file's
rules, when some listener is reachable from other hosts, loopback,
link-local, unspecified and multicast destinations are denied; then
everything is allowed.  A file whose last rule has no condition at all (a
catch-all) replaces that tail, but not the denial of the server's own
addresses.

This module is a pure rule engine: it uses no Twisted, so that it can be
tested, and reasoned about, on its own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "COMMANDS",
    "NAMED_SETS",
    "VERSIONS",
    "Decision",
    "Destinations",
    "Policy",
    "PolicyError",
    "Request",
    "Rule",
    "parseRules",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The SOCKS versions a rule can name, as L{Request.version} gives them.
VERSIONS = frozenset({"4", "4a", "5"})

#: The commands a rule can name, as L{Request.command} gives them.
COMMANDS = frozenset({"connect", "bind", "udp"})


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


#: The named destination sets, but C{self}, which is the server's own
#: addresses and known only at run time.
NAMED_SETS: Mapping[str, tuple[IPNetwork, ...]] = {
    "loopback": _networks("127.0.0.0/8", "::1/128"),
    # RFC 1918, the shared address space of carrier-grade NAT (RFC 6598),
    # unique local IPv6 (RFC 4193) and the deprecated IPv6 site-local
    # addresses (RFC 3879), which some networks still route internally.
    "private": _networks(
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fec0::/10",
    ),
    "link-local": _networks("169.254.0.0/16", "fe80::/10"),
    "multicast": _networks("224.0.0.0/4", "ff00::/8"),
    # The whole of 0.0.0.0/8, "this network" (RFC 1122 3.2.1.3): no address
    # in it is a valid destination, and Linux sends a connection to
    # 0.0.0.0, or to 0.x.y.z on some versions, to the local host.
    "unspecified": _networks("0.0.0.0/8", "::/128"),
}

_SELF = "self"
_ALL_SETS = frozenset(NAMED_SETS) | {_SELF}
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
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
)
_CONDITION_KEYS = ("from", "users", "versions", "commands", "to", "ports")


class PolicyError(ValueError):
    """
    Rules that cannot be used; the message is one line naming the file, the
    rule and the key.
    """


def _unmappedAddress(address: IPAddress) -> IPAddress:
    # An IPv4-mapped IPv6 address is the IPv4 address: the same destination
    # must not escape a rule by being spelled the other way.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _parseAddress(text: str) -> IPAddress | None:
    """
    The address an IP literal names (a scope and an IPv4 mapping removed), or
    L{None} when C{text} is not an IP literal.
    """
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return _unmappedAddress(address)


def _unmappedNetwork(network: IPNetwork) -> IPNetwork:
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED)
    ):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _normalizeName(name: str) -> str:
    return name.rstrip(".").lower()


class _NetworkSet:
    """
    Networks of both families, matched with integer masks.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        for network in networks:
            target = self._v4 if network.version == 4 else self._v6
            entry = (int(network.netmask), int(network.network_address))
            if entry not in target:
                target.append(entry)

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def matches(self, address: IPAddress) -> bool:
        value = int(address)
        entries = self._v4 if address.version == 4 else self._v6
        return any(value & mask == network for mask, network in entries)


@dataclass(frozen=True)
class Destinations:
    """
    The C{to} of a rule.

    @ivar networks: CIDRs and bare IPs (as one-address networks), IPv4-mapped
        ones as IPv4.
    @ivar names: Exact names, lower case, without a trailing dot.
    @ivar suffixes: Domain suffixes, lower case, without the leading and
        trailing dots: C{example.com} for C{.example.com}.
    @ivar sets: Named sets (see L{NAMED_SETS}), C{self} included.
    """

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    _addresses: _NetworkSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks = list(self.networks)
        for name in sorted(self.sets - {_SELF}):
            networks.extend(NAMED_SETS[name])
        object.__setattr__(self, "_addresses", _NetworkSet(networks))

    @property
    def needsAddress(self) -> bool:
        """
        Whether an address could match: whether, for a name, these
        destinations can be decided only once it is resolved.
        """
        return bool(self._addresses) or _SELF in self.sets

    def matchesName(self, name: str) -> bool:
        """
        Whether C{name} (normalized: lower case, no trailing dot) is one of
        the names, or is, or is below, one of the suffixes.
        """
        if name in self.names:
            return True
        if not self.suffixes:
            return False
        # One set lookup per label: cheaper than one endswith per suffix.
        while True:
            if name in self.suffixes:
                return True
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1 :]

    def matchesAddress(
        self, address: IPAddress, port: int, own: Container[tuple[str, int]]
    ) -> bool:
        """
        Whether C{address} (unmapped) is in one of the networks or named
        sets, or C{(address, port)} is one of the server's own.
        """
        if self._addresses.matches(address):
            return True
        return _SELF in self.sets and (str(address), port) in own


@dataclass(frozen=True)
class Rule:
    """
    One rule: L{None} for a condition means it matches everything.

    @ivar index: The rule's position in the file, from 1; 0 for a built-in
        rule.
    @ivar name: The rule's C{name}, shown in denial logs.
    @ivar allow: Whether the rule allows (or denies).
    @ivar clients: The client networks (C{from}).
    @ivar users: User names and C{group:NAME} references.
    @ivar versions: Some of C{"4"}, C{"4a"}, C{"5"}.
    @ivar commands: Some of C{"connect"}, C{"bind"}, C{"udp"}.
    @ivar to: The destinations.
    @ivar ports: Inclusive port ranges.
    @ivar bind: The source address of the outbound connections of the
        sessions the rule allows.
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


@dataclass(frozen=True)
class Request:
    """
    What a client asks for.

    @ivar client: The client's IP; L{None} for a client on a UNIX socket,
        which matches only rules without C{from}.
    @ivar user: The authenticated user, if any.
    @ivar version: C{"4"}, C{"4a"} or C{"5"}.
    @ivar command: C{"connect"}, C{"bind"} or C{"udp"}.
    @ivar host: The destination as the client sent it: a name or an IP.
    @ivar port: The destination port.
    """

    client: str | None
    user: str | None
    version: str
    command: str
    host: str
    port: int


@dataclass(frozen=True)
class Decision:
    """
    What the rules say of a request.

    @ivar allowed: Whether it is allowed; L{None} when it cannot be told
        before the name is resolved (then C{rule} is L{None} too).
    @ivar rule: The rule that decided.
    """

    allowed: bool | None
    rule: Rule | None

    @property
    def bind(self) -> str | None:
        """
        The outbound source address the deciding rule asks for, if it
        allowed.
        """
        if self.allowed and self.rule is not None:
            return self.rule.bind
        return None


# Built-in rules.
_DENY_SELF = Rule(
    index=0,
    name="default: deny self",
    allow=False,
    to=Destinations(sets=frozenset({_SELF})),
)
_LOCAL_SETS = ("loopback", "link-local", "unspecified", "multicast")
_DENY_LOCAL = Rule(
    index=0,
    name="default: deny " + ", ".join(_LOCAL_SETS),
    allow=False,
    to=Destinations(sets=frozenset(_LOCAL_SETS)),
)
_ALLOW = Rule(index=0, name="default: allow", allow=True)

#: The built-in rule, always first, that denies the server's own addresses.
DENY_SELF = _DENY_SELF


class _Compiled:
    """
    A rule made quick to match.
    """

    __slots__ = (
        "clients",
        "commands",
        "groups",
        "ports",
        "rule",
        "to",
        "userNames",
        "versions",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.clients = None if rule.clients is None else _NetworkSet(rule.clients)
        self.versions = rule.versions
        self.commands = rule.commands
        self.ports = rule.ports
        self.to = rule.to
        self.userNames: frozenset[str] | None = None
        self.groups: frozenset[str] | None = None
        if rule.users is not None:
            self.userNames = frozenset(
                user for user in rule.users if not user.startswith("group:")
            )
            self.groups = frozenset(
                user.removeprefix("group:")
                for user in rule.users
                if user.startswith("group:")
            )

    def matchesClient(self, client: IPAddress | None) -> bool:
        if self.clients is None:
            return True
        return client is not None and self.clients.matches(client)


class Policy:
    """
    The rules of a file with the built-in ones around them.

    @ivar rules: All the rules, in the order they are tried.
    """

    def __init__(
        self,
        rules: tuple[Rule, ...],
        groups: Mapping[str, frozenset[str]],
        own: Container[tuple[str, int]],
        publicListener: bool,
    ) -> None:
        """
        @param rules: The file's rules (L{parseRules}).
        @param groups: Group name to its members.
        @param own: The server's own listening addresses, C{(IP, port)}.
        @param publicListener: Whether some listener is reachable from other
            hosts (is not loopback-only).
        """
        allRules = [_DENY_SELF, *rules]
        if not (rules and rules[-1].catchAll):
            if publicListener:
                allRules.append(_DENY_LOCAL)
            allRules.append(_ALLOW)
        self.rules: tuple[Rule, ...] = tuple(allRules)
        self._compiled = [_Compiled(rule) for rule in self.rules]
        self._own = own
        memberships: dict[str, set[str]] = {}
        for group, members in groups.items():
            for member in members:
                memberships.setdefault(member, set()).add(group)
        self._memberships = {
            user: frozenset(names) for user, names in memberships.items()
        }

    def groupsOf(self, user: str) -> frozenset[str]:
        """
        The groups C{user} is a member of.
        """
        return self._memberships.get(user, frozenset())

    def mayEverAllow(self, client: str | None) -> bool:
        """
        Whether any request from C{client} could be allowed: C{False} when a
        rule that denies whatever it is asked for, but for its C{from}, comes
        before every allowing rule whose C{from} matches it.

        @param client: The client's IP, L{None} for a UNIX-socket client.
        """
        address = None if client is None else _parseAddress(client)
        for compiled in self._compiled:
            if not compiled.matchesClient(address):
                continue
            rule = compiled.rule
            if rule.allow:
                return True
            if (
                rule.users is None
                and rule.versions is None
                and (rule.commands is None and rule.to is None and rule.ports is None)
            ):
                return False
        return False

    def decide(
        self,
        request: Request,
        address: str | None = None,
        *,
        destinationKnown: bool = True,
    ) -> Decision:
        """
        Find the rule that decides C{request}.

        @param address: For a request naming its destination by name, an
            address the name resolved to; ignored for an IP-literal host.
        @param destinationKnown: C{False} when the request names no
            destination yet (UDP ASSOCIATE: each datagram names its own);
            rules with C{to} or C{ports} then cannot decide.

        @return: The decision; undetermined (C{Decision(None, None)}) when
            the host is a name, C{address} is L{None}, and some rule before
            the deciding one could be told only by the address (or when the
            destination is not known and such a rule comes first).
        """
        client = None if request.client is None else _parseAddress(request.client)
        if not destinationKnown:
            return self._decideWithoutDestination(request, client)
        target = _parseAddress(request.host)
        name: str | None = None
        if target is None:
            name = _normalizeName(request.host)
            if address is not None:
                target = _parseAddress(address)
        user = request.user
        userGroups = None if user is None else self.groupsOf(user)
        port = request.port
        pending = False
        pendingAllows = False
        for compiled in self._compiled:
            # Cheap conditions first; the destination last.
            if compiled.commands is not None and request.command not in (
                compiled.commands
            ):
                continue
            if compiled.versions is not None and request.version not in (
                compiled.versions
            ):
                continue
            if compiled.ports is not None and not any(
                low <= port <= high for low, high in compiled.ports
            ):
                continue
            if compiled.userNames is not None:
                assert compiled.groups is not None
                if user is None or not (
                    user in compiled.userNames
                    or (
                        userGroups is not None
                        and not userGroups.isdisjoint(compiled.groups)
                    )
                ):
                    continue
            if not compiled.matchesClient(client):
                continue
            to = compiled.to
            rule = compiled.rule
            if to is not None:
                matched = (name is not None and to.matchesName(name)) or (
                    target is not None and to.matchesAddress(target, port, self._own)
                )
                if not matched:
                    if target is None and to.needsAddress:
                        pending = True
                        pendingAllows = pendingAllows or rule.allow
                    continue
            if pending and (rule.allow or pendingAllows):
                return Decision(None, None)
            return Decision(rule.allow, rule)
        # Not reached: the last rule has no condition.
        return Decision(None if pending else False, None)

    def _decideWithoutDestination(
        self, request: Request, client: IPAddress | None
    ) -> Decision:
        user = request.user
        userGroups = None if user is None else self.groupsOf(user)
        for compiled in self._compiled:
            if compiled.commands is not None and request.command not in (
                compiled.commands
            ):
                continue
            if compiled.versions is not None and request.version not in (
                compiled.versions
            ):
                continue
            if compiled.userNames is not None:
                assert compiled.groups is not None
                if user is None or not (
                    user in compiled.userNames
                    or (
                        userGroups is not None
                        and not userGroups.isdisjoint(compiled.groups)
                    )
                ):
                    continue
            if not compiled.matchesClient(client):
                continue
            rule = compiled.rule
            if compiled.to is not None or compiled.ports is not None:
                if rule.allow:
                    return Decision(None, None)  # each destination decides
                continue  # a deny for some destinations only
            return Decision(rule.allow, rule)
        return Decision(False, None)


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
            networks.append(_unmappedNetwork(network))
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
                    f"{item!r} is not a command (connect, bind or udp)",
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
            if entry.lower() in _ALL_SETS:
                sets.add(entry.lower())
                continue
            try:
                networks.append(_unmappedNetwork(ipaddress.ip_network(entry)))
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
            address = _parseAddress(bind) if isinstance(bind, str) else None
            if address is None or "%" in str(bind):
                raise self.error("bind", f"{_describeValue(bind)} is not an IP address")
            bind = str(address)
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
        )


def _checkName(text: str) -> str | None:
    """
    The normalized form of a host name (lower case, no trailing dot,
    IDNA-encoded), or L{None} if C{text} is not one.
    """
    try:
        name = text.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    name = _normalizeName(name)
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
