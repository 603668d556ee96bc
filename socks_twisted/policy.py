"""
Access rules: which client may ask for what, and the built-in rules that
keep the proxy from relaying into places it should not.

A rule allows or denies; the first rule that matches a request decides.
Each condition of a rule is optional, and a missing one matches everything:

  - C{clients} (C{from} in the file): client addresses, as CIDRs;
  - C{users}: authenticated user names and C{group:NAME} references;
  - C{versions}: C{"4"}, C{"4a"}, C{"5"};
  - C{commands}: C{"connect"}, C{"bind"}, C{"udp"}, and Tor's C{"resolve"}
    and C{"resolve_ptr"} (whose port is the one the client sent: 0 from
    tor-resolve, so a rule with C{ports} matches them only if it names 0);
  - C{to}: destinations (L{Destinations});
  - C{ports}: destination ports and port ranges.

An allowing rule may also name C{bind} (the source address of its
connections) and C{via} (an upstream proxy URL, or L{DIRECT}), which
L{Policy.bindFor} and L{Policy.viaFor} find; neither is a condition.

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
address leaves the request undetermined (L{Decision.allowed} is C{None}): the
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

from collections.abc import Container, Mapping
from dataclasses import dataclass

from ._destinations import (
    NAMED_SETS,
    SELF,
    Destinations,
    IPAddress,
    NetworkSet,
    normalizeName,
    parseAddress,
)
from ._rules import (
    COMMANDS,
    DIRECT,
    VERSIONS,
    PolicyError,
    Rule,
    parseRules,
)

__all__ = [
    "COMMANDS",
    "DIRECT",
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


@dataclass(frozen=True)
class Request:
    """
    What a client asks for.

    @ivar client: The client's IP; C{None} for a client on a UNIX socket,
        which matches only rules without C{from}.
    @ivar user: The authenticated user, if any.
    @ivar version: C{"4"}, C{"4a"} or C{"5"}.
    @ivar command: C{"connect"}, C{"bind"}, C{"udp"}, C{"resolve"} or
        C{"resolve_ptr"}.
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

    @ivar allowed: Whether it is allowed; C{None} when it cannot be told
        before the name is resolved (then C{rule} is C{None} too).
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
    to=Destinations(sets=frozenset({SELF})),
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
        self.clients = None if rule.clients is None else NetworkSet(rule.clients)
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

    def matchesAsker(
        self,
        request: Request,
        client: IPAddress | None,
        userGroups: frozenset[str] | None,
    ) -> bool:
        """
        Whether the rule's conditions on who asks, and for what command in
        what version, hold for C{request}.
        """
        if self.commands is not None and request.command not in self.commands:
            return False
        if self.versions is not None and request.version not in self.versions:
            return False
        if self.userNames is not None:
            assert self.groups is not None
            user = request.user
            if user is None:
                return False
            if user not in self.userNames and (
                userGroups is None or userGroups.isdisjoint(self.groups)
            ):
                return False
        return self.matchesClient(client)

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
        #: Whether some rule names a C{via}, so that routes must be chosen.
        self.routes = any(rule.via is not None for rule in self.rules)
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

        @param client: The client's IP, C{None} for a UNIX-socket client.
        """
        address = None if client is None else parseAddress(client)
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
            the host is a name, C{address} is C{None}, and some rule before
            the deciding one could be told only by the address (or when the
            destination is not known and such a rule comes first).
        """
        client = None if request.client is None else parseAddress(request.client)
        if not destinationKnown:
            return self._decideWithoutDestination(request, client)
        target = parseAddress(request.host)
        name: str | None = None
        if target is None:
            name = normalizeName(request.host)
            if address is not None:
                target = parseAddress(address)
        user = request.user
        userGroups = None if user is None else self.groupsOf(user)
        port = request.port
        pending = False
        pendingAllows = False
        for compiled in self._compiled:
            # Cheap conditions first; the destination last.
            if compiled.ports is not None and not any(
                low <= port <= high for low, high in compiled.ports
            ):
                continue
            if not compiled.matchesAsker(request, client, userGroups):
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

    def bindFor(self, request: Request) -> str | None:
        """
        The source address for a request whose destination is a name: the
        C{bind} of the first rule that matches it by name (or has no C{to})
        and allows it.  Rules that only an address could match are passed
        over: the addresses are checked one by one when dialled, and a
        connection's source address has to be chosen before.
        """
        return self.decideByName(request).bind

    def decideByName(self, request: Request) -> Decision:
        """
        Decide a request whose destination is a name from the name alone:
        the first rule that matches it by name (or has no C{to}) decides,
        and rules that only an address could match are passed over.

        This is what can be decided when the addresses are never known here
        (a name sent for an upstream proxy to resolve), and what chooses,
        before a name is resolved, the source address and the route of its
        connections.

        @return: The decision; C{Decision(False, None)} if no rule matches.
        """
        client = None if request.client is None else parseAddress(request.client)
        name = normalizeName(request.host)
        user = request.user
        userGroups = None if user is None else self.groupsOf(user)
        port = request.port
        for compiled in self._compiled:
            if compiled.ports is not None and not any(
                low <= port <= high for low, high in compiled.ports
            ):
                continue
            if not compiled.matchesAsker(request, client, userGroups):
                continue
            to = compiled.to
            if to is not None and not to.matchesName(name):
                continue
            return Decision(compiled.rule.allow, compiled.rule)
        return Decision(False, None)

    def viaFor(self, request: Request, *, destinationKnown: bool = True) -> str | None:
        """
        The C{via} of the rule that allows C{request}: an upstream proxy URL,
        L{DIRECT}, or C{None} when the rules say nothing (the server's
        default applies).

        For an IP destination that is the deciding rule's; for a name, the
        rule L{decideByName} finds (as for C{bind}); for a UDP association
        (C{destinationKnown} false), the first rule that matches who asks
        and has neither C{to} nor C{ports}, since one association has one
        route whatever its datagrams' destinations.
        """
        rule: Rule | None
        if not destinationKnown:
            rule = self._firstWithoutDestination(request)
        elif parseAddress(request.host) is None:
            rule = self.decideByName(request).rule
        else:
            rule = self.decide(request).rule
        if rule is None or not rule.allow:
            return None
        return rule.via

    def _firstWithoutDestination(self, request: Request) -> Rule | None:
        client = None if request.client is None else parseAddress(request.client)
        user = request.user
        userGroups = None if user is None else self.groupsOf(user)
        for compiled in self._compiled:
            if compiled.to is not None or compiled.ports is not None:
                continue
            if compiled.matchesAsker(request, client, userGroups):
                return compiled.rule
        return None

    def _decideWithoutDestination(
        self, request: Request, client: IPAddress | None
    ) -> Decision:
        user = request.user
        userGroups = None if user is None else self.groupsOf(user)
        for compiled in self._compiled:
            if not compiled.matchesAsker(request, client, userGroups):
                continue
            rule = compiled.rule
            if compiled.to is not None or compiled.ports is not None:
                if rule.allow:
                    return Decision(None, None)  # each destination decides
                continue  # a deny for some destinations only
            return Decision(rule.allow, rule)
        return Decision(False, None)
