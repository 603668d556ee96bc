"""
Tests for L{socks_twisted.policy}: reading rules, matching requests against
them, and the built-in rules around the file's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.policy import (
    NAMED_SETS,
    Decision,
    Destinations,
    Policy,
    PolicyError,
    Request,
    Rule,
    parseRules,
)

SOURCE = "/etc/socks.toml"
GROUPS: Mapping[str, frozenset[str]] = {
    "staff": frozenset({"alice", "bob"}),
    "ops": frozenset({"bob"}),
}

# Trial runs each test in a fresh _trial_temp, where an example database
# would never be read again.
_settings = settings(max_examples=200, deadline=None, database=None)


def policyOf(
    rules: list[dict[str, object]],
    own: frozenset[tuple[str, int]] = frozenset(),
    publicListener: bool = False,
    groups: Mapping[str, frozenset[str]] = GROUPS,
) -> Policy:
    """
    A policy of C{rules}, as a file would give them.
    """
    return Policy(parseRules(rules, groups, SOURCE), groups, own, publicListener)


def request(
    host: str = "198.51.100.7",
    port: int = 443,
    client: str | None = "192.0.2.5",
    user: str | None = None,
    version: str = "5",
    command: str = "connect",
) -> Request:
    """
    A request with ordinary defaults.
    """
    return Request(
        client=client,
        user=user,
        version=version,
        command=command,
        host=host,
        port=port,
    )


def allowed(policy: Policy, req: Request, address: str | None = None) -> bool | None:
    """
    Whether C{policy} allows C{req}.
    """
    return policy.decide(req, address).allowed


# A file that allows only what its first rule matches.
def only(**conditions: object) -> list[dict[str, object]]:
    """
    Rules allowing what C{conditions} match and denying everything else.
    """
    return [{"action": "allow", **conditions}, {"action": "deny"}]


class DestinationTests(SynchronousTestCase):
    """
    The C{to} of a rule: CIDRs, names, suffixes.
    """

    def test_cidrs(self) -> None:
        """
        CIDRs and bare IPs of both families match the addresses in them.
        """
        policy = policyOf(
            only(
                to=["198.51.100.0/24", "2001:db8::/32", "203.0.113.9", "2001:db8:1::1"]
            )
        )
        cases = [
            ("198.51.100.7", True),
            ("198.51.100.255", True),
            ("198.51.101.0", False),
            ("2001:db8:ffff::1", True),
            ("2001:0DB8::1", True),
            ("[2001:db8::1]", True),
            ("fe80::1%eth0", False),
            ("2001:db9::1", False),
            ("203.0.113.9", True),
            ("203.0.113.10", False),
        ]
        for host, expected in cases:
            self.assertEqual(allowed(policy, request(host=host)), expected, host)

    def test_ipv4Mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address is matched as the IPv4 address it
        carries, in a request and in a CIDR of the file; so is a mapped
        client address.
        """
        policy = policyOf(only(to=["198.51.100.0/24"]))
        self.assertTrue(allowed(policy, request(host="::ffff:198.51.100.7")))
        self.assertFalse(allowed(policy, request(host="::ffff:198.51.101.7")))
        policy = policyOf(only(to=["::ffff:198.51.100.0/120"]))
        self.assertTrue(allowed(policy, request(host="198.51.100.7")))
        policy = policyOf(only(**{"from": ["192.0.2.0/24"]}))
        self.assertTrue(allowed(policy, request(client="::ffff:192.0.2.5")))
        self.assertFalse(allowed(policy, request(client="::ffff:192.0.3.5")))

    def test_names(self) -> None:
        """
        Exact names and C{.suffix} entries match case-insensitively and
        without a trailing dot; a suffix matches the name itself and names
        below it, not names that merely end the same way.
        """
        policy = policyOf(only(to=["Example.ORG", ".example.com."]))
        cases = [
            ("example.org", True),
            ("EXAMPLE.org.", True),
            ("www.example.org", False),
            ("example.com", True),
            ("www.example.com", True),
            ("a.b.EXAMPLE.COM.", True),
            ("badexample.com", False),
            ("example.com.evil.net", False),
            ("com", False),
        ]
        for host, expected in cases:
            self.assertEqual(
                allowed(policy, request(host=host), "198.51.100.7"), expected, host
            )

    def test_nameMatchesWithoutAddress(self) -> None:
        """
        Before a name is resolved, name entries match it: a denial is
        decided, but an allowing rule is not, as the name could resolve to
        the server itself (C{self} is always denied first).
        """
        policy = policyOf(only(to=[".example.com"]))
        self.assertIsNone(allowed(policy, request(host="www.example.com")))
        decision = policy.decide(request(host="www.example.net"))
        self.assertFalse(decision.allowed)
        self.assertEqual(decision.rule.index, 2)  # type: ignore[union-attr]
        self.assertTrue(
            allowed(policy, request(host="www.example.com"), "203.0.113.50")
        )

    def test_nameOrAddress(self) -> None:
        """
        With an address given for a name, C{to} matches if the name matches a
        name entry or the address an IP entry; an IP-literal host ignores the
        address.
        """
        policy = policyOf(only(to=["198.51.100.0/24", "example.org"]))
        self.assertTrue(allowed(policy, request(host="example.net"), "198.51.100.1"))
        self.assertFalse(allowed(policy, request(host="example.net"), "203.0.113.1"))
        self.assertTrue(allowed(policy, request(host="example.org"), "203.0.113.1"))
        self.assertFalse(allowed(policy, request(host="203.0.113.1"), "198.51.100.1"))

    def test_namedSets(self) -> None:
        """
        Each named set matches its addresses and not others.
        """
        cases = {
            "loopback": (["127.0.0.1", "127.255.0.1", "::1"], ["128.0.0.1", "::2"]),
            "private": (
                [
                    "10.1.2.3",
                    "172.16.0.1",
                    "172.31.255.255",
                    "192.168.1.1",
                    "100.64.0.1",
                    "100.127.255.255",
                    "fd00::1",
                    "fc00::1",
                ],
                ["172.32.0.1", "100.128.0.1", "8.8.8.8", "2001:db8::1"],
            ),
            "link-local": (["169.254.1.1", "fe80::1"], ["169.255.0.1", "fec0::1"]),
            "multicast": (
                ["224.0.0.1", "239.255.255.255", "ff02::1"],
                ["240.0.0.1", "fe80::1"],
            ),
            "unspecified": (["0.0.0.0", "0.1.2.3", "::"], ["1.0.0.0", "::1"]),
        }
        self.assertEqual(set(cases), set(NAMED_SETS))
        for name, (inside, outside) in cases.items():
            policy = policyOf(only(to=[name.upper()]))
            for host in inside:
                self.assertTrue(allowed(policy, request(host=host)), (name, host))
                self.assertTrue(
                    allowed(policy, request(host="x.example"), host), (name, host)
                )
            for host in outside:
                self.assertFalse(allowed(policy, request(host=host)), (name, host))

    def test_namedSetShadowsName(self) -> None:
        """
        A bare word naming a set is the set; with a trailing dot it is a
        host name.
        """
        policy = policyOf(only(to=["loopback."]))
        self.assertTrue(allowed(policy, request(host="loopback"), "203.0.113.50"))
        self.assertFalse(allowed(policy, request(host="127.0.0.1")))

    def test_self(self) -> None:
        """
        C{self} matches the server's own addresses with their ports.
        """
        own = frozenset({("192.0.2.1", 1080)})
        policy = policyOf(
            [{"action": "deny", "to": ["self"]}, {"action": "allow"}], own=own
        )
        self.assertFalse(allowed(policy, request(host="192.0.2.1", port=1080)))
        self.assertFalse(allowed(policy, request(host="::ffff:192.0.2.1", port=1080)))
        self.assertTrue(allowed(policy, request(host="192.0.2.1", port=1081)))
        self.assertFalse(
            allowed(policy, request(host="proxy.example", port=1080), "192.0.2.1")
        )
        self.assertTrue(
            allowed(policy, request(host="proxy.example", port=1080), "192.0.2.2")
        )


class ConditionTests(SynchronousTestCase):
    """
    The other conditions of a rule.
    """

    def test_ports(self) -> None:
        """
        Ports and ranges, given as numbers or strings, match inclusively.
        """
        policy = policyOf(only(ports=[80, "443", "8000-8999", " 10 - 20 "]))
        cases = [
            (80, True),
            (81, False),
            (443, True),
            (7999, False),
            (8000, True),
            (8999, True),
            (9000, False),
            (10, True),
            (20, True),
        ]
        for port, expected in cases:
            self.assertEqual(allowed(policy, request(port=port)), expected, port)

    def test_commands(self) -> None:
        """
        C{commands} matches the commands it lists.
        """
        policy = policyOf(only(commands=["connect", "udp"]))
        for command, expected in [("connect", True), ("udp", True), ("bind", False)]:
            self.assertEqual(
                allowed(policy, request(command=command)), expected, command
            )

    def test_resolveCommands(self) -> None:
        """
        Tor's lookups are the commands C{resolve} and C{resolve_ptr}, each
        its own: a rule for CONNECT does not match them, nor one for the
        other lookup.
        """
        policy = policyOf(only(commands=["resolve"]))
        for command, expected in [
            ("resolve", True),
            ("resolve_ptr", False),
            ("connect", False),
        ]:
            self.assertEqual(
                allowed(policy, request(command=command, port=0)), expected, command
            )

    def test_resolvePortZero(self) -> None:
        """
        A lookup's port is the one the client sent (0 from tor-resolve): a
        rule with C{ports} that does not name 0 does not match it.
        """
        policy = policyOf(only(ports=[80, 443]))
        self.assertFalse(allowed(policy, request(command="resolve", port=0)))
        policy = policyOf(only(ports=[0, 80]))
        self.assertTrue(allowed(policy, request(command="resolve", port=0)))

    def test_versions(self) -> None:
        """
        C{versions} takes 4 and 5 as numbers or strings, and C{"4a"}.
        """
        for given_, matching in [
            ([4], {"4"}),
            (["4"], {"4"}),
            (["4a"], {"4a"}),
            ([5, "4a"], {"5", "4a"}),
            (["5"], {"5"}),
            (5, {"5"}),
        ]:
            policy = policyOf(only(versions=given_))
            for version in ("4", "4a", "5"):
                self.assertEqual(
                    allowed(policy, request(version=version)),
                    version in matching,
                    (given_, version),
                )

    def test_users(self) -> None:
        """
        C{users} matches the users it names and the members of the groups it
        names; not a request without a user, nor a user whose name looks
        like a group reference.
        """
        policy = policyOf(only(users=["group:staff", "carol"]))
        cases = [
            ("alice", True),
            ("bob", True),
            ("carol", True),
            ("dave", False),
            ("staff", False),
            ("group:staff", False),
            (None, False),
        ]
        for user, expected in cases:
            self.assertEqual(allowed(policy, request(user=user)), expected, user)

    def test_groupsOf(self) -> None:
        """
        L{Policy.groupsOf} gives the groups a user is a member of.
        """
        policy = policyOf([])
        self.assertEqual(policy.groupsOf("bob"), frozenset({"staff", "ops"}))
        self.assertEqual(policy.groupsOf("alice"), frozenset({"staff"}))
        self.assertEqual(policy.groupsOf("carol"), frozenset())

    def test_from(self) -> None:
        """
        C{from} matches client addresses in its networks; a UNIX-socket
        client (L{None}) matches only rules without C{from}.
        """
        policy = policyOf(
            [
                {"action": "allow", "from": ["192.0.2.0/24", "2001:db8::/32"]},
                {"action": "deny", "from": "0.0.0.0/0"},
                {"action": "allow", "commands": ["bind"]},
                {"action": "deny"},
            ]
        )
        cases = [
            ("192.0.2.200", "connect", True),
            ("2001:db8::5", "connect", True),
            ("198.51.100.1", "connect", False),
            ("198.51.100.1", "bind", False),
            ("2001:db9::1", "bind", True),
            (None, "connect", False),
            (None, "bind", True),
        ]
        for client, command, expected in cases:
            self.assertEqual(
                allowed(policy, request(client=client, command=command)),
                expected,
                (client, command),
            )

    def test_firstMatchDecides(self) -> None:
        """
        The first rule that matches decides, whatever follows.
        """
        policy = policyOf(
            [
                {"action": "deny", "to": "198.51.100.7"},
                {"action": "allow", "to": "198.51.100.0/24"},
                {"action": "deny"},
            ]
        )
        self.assertEqual(policy.decide(request(host="198.51.100.7")).rule.index, 1)  # type: ignore[union-attr]
        decision = policy.decide(request(host="198.51.100.8"))
        self.assertTrue(decision.allowed)
        self.assertEqual(decision.rule.index, 2)  # type: ignore[union-attr]
        decision = policy.decide(request(host="203.0.113.1"))
        self.assertFalse(decision.allowed)
        self.assertEqual(decision.rule.index, 3)  # type: ignore[union-attr]

    def test_bind(self) -> None:
        """
        L{Decision.bind} is the C{bind} of the rule that allowed, and L{None}
        for a denial.
        """
        policy = policyOf(
            [
                {"action": "allow", "to": "198.51.100.0/24", "bind": "192.0.2.10"},
                {"action": "allow", "to": "203.0.113.0/24"},
                {"action": "deny"},
            ]
        )
        self.assertEqual(policy.decide(request(host="198.51.100.1")).bind, "192.0.2.10")
        self.assertIsNone(policy.decide(request(host="203.0.113.1")).bind)
        self.assertIsNone(policy.decide(request(host="8.8.8.8")).bind)
        self.assertIsNone(Decision(None, None).bind)


class UndeterminedTests(SynchronousTestCase):
    """
    A name before it is resolved.
    """

    def test_undetermined(self) -> None:
        """
        A rule that only an address could match, reached before any rule
        decides, leaves the request undetermined; asked again with the
        address, the rules decide.
        """
        policy = policyOf(only(to=["198.51.100.0/24"]))
        self.assertEqual(
            policy.decide(request(host="www.example.com")), Decision(None, None)
        )
        self.assertTrue(
            allowed(policy, request(host="www.example.com"), "198.51.100.1")
        )
        self.assertFalse(
            allowed(policy, request(host="www.example.com"), "203.0.113.1")
        )

    def test_otherConditionsFirst(self) -> None:
        """
        A rule whose other conditions do not match is passed over, not left
        undetermined.
        """
        policy = policyOf(
            [
                {"action": "allow", "to": ["198.51.100.0/24"], "ports": [22]},
                {"action": "deny", "to": [".example.com"]},
                {"action": "allow"},
            ]
        )
        self.assertFalse(allowed(policy, request(host="www.example.com", port=443)))
        self.assertIsNone(allowed(policy, request(host="www.example.com", port=22)))

    def test_denialDecidesEarly(self) -> None:
        """
        When every undetermined rule before a rule that denies denies too,
        the request is denied whatever the address; an undetermined rule
        that allows keeps it undetermined.
        """
        policy = policyOf(
            [
                {"action": "deny", "to": ["private"]},
                {"action": "deny", "to": [".ads.example"]},
                {"action": "allow"},
            ]
        )
        decision = policy.decide(request(host="x.ads.example"))
        self.assertEqual((decision.allowed, decision.rule.index), (False, 2))  # type: ignore[union-attr]
        self.assertIsNone(allowed(policy, request(host="www.example")))
        policy = policyOf(
            [
                {"action": "allow", "to": ["198.51.100.0/24"]},
                {"action": "deny", "to": [".ads.example"]},
                {"action": "allow"},
            ]
        )
        self.assertIsNone(allowed(policy, request(host="x.ads.example")))

    def test_unparsableAddress(self) -> None:
        """
        An address that is not an IP literal is as good as none.
        """
        policy = policyOf(only(to=["198.51.100.0/24"]))
        self.assertIsNone(allowed(policy, request(host="a.example"), "nonsense"))


class BuiltInTests(SynchronousTestCase):
    """
    The rules a policy adds around the file's.
    """

    own = frozenset({("192.0.2.1", 1080)})

    def test_loopbackListener(self) -> None:
        """
        With only loopback listeners, the tail denies only the server itself.
        """
        policy = policyOf([], own=self.own)
        for host in ("127.0.0.1", "::1", "169.254.1.1", "0.0.0.0", "224.0.0.1"):
            self.assertTrue(allowed(policy, request(host=host)), host)
        self.assertFalse(allowed(policy, request(host="192.0.2.1", port=1080)))
        self.assertEqual(
            [rule.describe() for rule in policy.rules],
            ["default rule (deny self)", "default rule (allow)"],
        )

    def test_publicListener(self) -> None:
        """
        With a listener reachable from other hosts, the tail also denies
        loopback, link-local, unspecified and multicast destinations, but
        allows private ones.
        """
        policy = policyOf([], own=self.own, publicListener=True)
        for host in ("127.0.0.1", "::1", "169.254.1.1", "0.0.0.0", "::", "ff02::1"):
            self.assertFalse(allowed(policy, request(host=host)), host)
            self.assertFalse(
                allowed(policy, request(host="localhost.example"), host), host
            )
        for host in ("10.0.0.1", "8.8.8.8"):
            self.assertTrue(allowed(policy, request(host=host)), host)
        self.assertFalse(allowed(policy, request(host="192.0.2.1", port=1080)))
        self.assertEqual(
            policy.decide(request(host="127.0.0.1")).rule.describe(),  # type: ignore[union-attr]
            "default rule (deny loopback, link-local, unspecified, multicast)",
        )

    def test_tailAfterFileRules(self) -> None:
        """
        File rules without a catch-all are followed by the tail.
        """
        policy = policyOf(
            [{"action": "deny", "to": ["10.0.0.0/8"]}], publicListener=True
        )
        self.assertFalse(allowed(policy, request(host="10.1.1.1")))
        self.assertFalse(allowed(policy, request(host="127.0.0.1")))
        self.assertTrue(allowed(policy, request(host="8.8.8.8")))

    def test_catchAllReplacesTail(self) -> None:
        """
        A file ending with a catch-all replaces the tail; the server's own
        addresses stay denied even then.
        """
        policy = policyOf([{"action": "allow"}], own=self.own, publicListener=True)
        self.assertTrue(allowed(policy, request(host="127.0.0.1")))
        self.assertFalse(allowed(policy, request(host="192.0.2.1", port=1080)))
        self.assertEqual(len(policy.rules), 2)
        policy = policyOf(
            [{"action": "allow", "to": ["self"]}, {"action": "allow"}], own=self.own
        )
        decision = policy.decide(request(host="192.0.2.1", port=1080))
        self.assertFalse(decision.allowed)
        self.assertEqual(decision.rule.describe(), "default rule (deny self)")  # type: ignore[union-attr]
        policy = policyOf([{"action": "deny", "name": "nothing"}])
        self.assertFalse(allowed(policy, request(host="8.8.8.8")))

    def test_selfBeforeResolution(self) -> None:
        """
        A name is undetermined before resolution, since it may resolve to the
        server itself.
        """
        policy = policyOf([], own=self.own)
        self.assertIsNone(allowed(policy, request(host="proxy.example")))


class MayEverAllowTests(SynchronousTestCase):
    """
    L{Policy.mayEverAllow}, asked as a connection is accepted.
    """

    def test_mayEverAllow(self) -> None:
        """
        A client is refused at once only when a rule denying it
        unconditionally comes before every allowing rule that matches it.
        """
        policy = policyOf(
            [
                {"action": "deny", "from": ["192.0.2.128/25"]},
                {"action": "allow", "from": ["192.0.2.0/24"], "ports": [443]},
                {"action": "deny", "from": ["198.51.100.0/24"], "ports": [22]},
                {"action": "allow", "from": ["198.51.100.0/24"]},
                {"action": "deny"},
            ]
        )
        cases = [
            ("192.0.2.1", True),
            ("192.0.2.200", False),
            ("198.51.100.1", True),
            ("203.0.113.1", False),
            ("::ffff:192.0.2.1", True),
            (None, False),
            ("not an address", False),
        ]
        for client, expected in cases:
            self.assertEqual(policy.mayEverAllow(client), expected, client)

    def test_defaults(self) -> None:
        """
        Without rules, every client may be allowed.
        """
        policy = policyOf([], publicListener=True)
        self.assertTrue(policy.mayEverAllow("203.0.113.1"))
        self.assertTrue(policy.mayEverAllow(None))


class DescribeTests(SynchronousTestCase):
    """
    L{Rule.describe}.
    """

    def test_describe(self) -> None:
        """
        A rule is described by its position and name.
        """
        self.assertEqual(
            Rule(index=3, name="staff web", allow=True).describe(),
            'rule 3 ("staff web")',
        )
        self.assertEqual(Rule(index=4, name=None, allow=False).describe(), "rule 4")
        self.assertEqual(
            Rule(index=0, name="default: deny self", allow=False).describe(),
            "default rule (deny self)",
        )


class ParseTests(SynchronousTestCase):
    """
    L{parseRules}.
    """

    def test_fields(self) -> None:
        """
        Every key is read into its field, normalized.
        """
        (rule,) = parseRules(
            [
                {
                    "action": "allow",
                    "name": "staff web",
                    "from": ["192.0.2.0/24", "2001:db8::1"],
                    "users": ["group:staff", "carol"],
                    "versions": [5, "4a"],
                    "commands": ["connect", "udp"],
                    "to": [".Example.com", "example.org.", "198.51.100.0/24", "self"],
                    "ports": [80, "8000-8999"],
                    "bind": "::ffff:192.0.2.10",
                }
            ],
            GROUPS,
            SOURCE,
        )
        self.assertEqual(
            rule,
            Rule(
                index=1,
                name="staff web",
                allow=True,
                clients=(
                    ipaddress.ip_network("192.0.2.0/24"),
                    ipaddress.ip_network("2001:db8::1/128"),
                ),
                users=frozenset({"group:staff", "carol"}),
                versions=frozenset({"5", "4a"}),
                commands=frozenset({"connect", "udp"}),
                to=Destinations(
                    networks=(ipaddress.ip_network("198.51.100.0/24"),),
                    names=frozenset({"example.org"}),
                    suffixes=frozenset({"example.com"}),
                    sets=frozenset({"self"}),
                ),
                ports=((80, 80), (8000, 8999)),
                bind="192.0.2.10",
            ),
        )
        self.assertFalse(rule.catchAll)

    def test_idna(self) -> None:
        """
        A non-ASCII name is matched in its IDNA form, as it goes on the wire.
        """
        policy = policyOf(only(to=[".bücher.example"]))
        self.assertTrue(
            allowed(policy, request(host="www.xn--bcher-kva.example"), "203.0.113.5")
        )

    def test_errors(self) -> None:
        """
        A bad rule is a L{PolicyError} naming the file, the rule and the key.
        """
        cases: list[tuple[dict[str, object], str, str]] = [
            ({"to": ["x.example"]}, "action", "missing"),
            ({"action": "maybe"}, "action", "'maybe'"),
            ({"action": "allow", "form": ["10.0.0.0/8"]}, "form", "unknown key"),
            ({"action": "allow", "name": 5}, "name", "not a string"),
            (
                {"action": "allow", "to": ["10.0.0.0/33"]},
                "to",
                "'10.0.0.0/33' is not a CIDR, a name, a .suffix or a named set",
            ),
            ({"action": "allow", "to": ["10.0.0.256"]}, "to", "is not a CIDR"),
            ({"action": "allow", "to": ["*.example.com"]}, "to", "is not a CIDR"),
            ({"action": "allow", "to": ["."]}, "to", "is not a CIDR"),
            ({"action": "allow", "to": [5]}, "to", "not a string"),
            ({"action": "allow", "to": []}, "to", "empty list"),
            ({"action": "allow", "to": {"a": 1}}, "to", "not a table"),
            ({"action": "allow", "from": ["10.0.0.1/8"]}, "from", "host bits"),
            ({"action": "allow", "from": ["example.com"]}, "from", "not a CIDR"),
            ({"action": "allow", "ports": ["9-1"]}, "ports", "'9-1'"),
            ({"action": "allow", "ports": [70000]}, "ports", "70000"),
            ({"action": "allow", "ports": [-1]}, "ports", "-1"),
            ({"action": "allow", "ports": [True]}, "ports", "True"),
            ({"action": "allow", "ports": ["http"]}, "ports", "'http'"),
            ({"action": "allow", "versions": [6]}, "versions", "6"),
            ({"action": "allow", "versions": [True]}, "versions", "True"),
            ({"action": "allow", "commands": ["CONNECT"]}, "commands", "'CONNECT'"),
            ({"action": "allow", "commands": ["ptr"]}, "commands", "resolve_ptr"),
            ({"action": "allow", "users": ["group:nobody"]}, "users", "group:nobody"),
            ({"action": "allow", "users": ["a:b"]}, "users", "'a:b'"),
            ({"action": "allow", "bind": "eth0"}, "bind", "not an IP"),
            ({"action": "deny", "bind": "192.0.2.1"}, "bind", "allows"),
        ]
        for table, key, problem in cases:
            with self.assertRaises(PolicyError) as caught:
                parseRules(
                    [{"action": "deny", "to": "x.example"}, table], GROUPS, SOURCE
                )
            message = str(caught.exception)
            self.assertTrue(
                message.startswith(f"{SOURCE}: [[rules]] #2 key {key!r}: "), message
            )
            self.assertIn(problem, message)
            self.assertNotIn("\n", message)

    def test_notTables(self) -> None:
        """
        Rules that are not a list of tables are refused.
        """
        with self.assertRaises(PolicyError) as caught:
            parseRules([5], GROUPS, SOURCE)  # type: ignore[list-item]
        self.assertEqual(
            str(caught.exception), f"{SOURCE}: [[rules]] #1: must be a table"
        )
        with self.assertRaises(PolicyError):
            parseRules({"action": "allow"}, GROUPS, SOURCE)  # type: ignore[arg-type]

    def test_catchAllNotLast(self) -> None:
        """
        A catch-all before the last rule is an error: the rules after it
        could never match.
        """
        with self.assertRaises(PolicyError) as caught:
            parseRules(
                [{"action": "allow"}, {"action": "deny", "to": "x.example"}],
                GROUPS,
                SOURCE,
            )
        self.assertIn("#1", str(caught.exception))
        self.assertIn("never match", str(caught.exception))


# Property tests.

_cidrs = st.one_of(
    st.builds(
        lambda address, prefix: str(
            ipaddress.IPv4Network((address, prefix), strict=False)
        ),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda address, prefix: str(
            ipaddress.IPv6Network((address, prefix), strict=False)
        ),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    ),
)
_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_names = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_labels, max_size=3),
    st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
)
_destinations = st.one_of(
    _cidrs,
    _names,
    _names.map(lambda name: "." + name),
    st.sampled_from(sorted([*NAMED_SETS, "self"])),
)
_ports = st.one_of(
    st.integers(0, 65535),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(
        lambda pair: f"{min(pair)}-{max(pair)}"
    ),
)
_ruleTables = st.fixed_dictionaries(
    {"action": st.sampled_from(["allow", "deny"])},
    optional={
        "name": st.text(max_size=10),
        "from": st.lists(_cidrs, min_size=1, max_size=3),
        "users": st.lists(
            st.sampled_from(["alice", "carol", "group:staff", "group:ops"]),
            min_size=1,
        ),
        "versions": st.lists(st.sampled_from([4, 5, "4", "5", "4a"]), min_size=1),
        "commands": st.lists(
            st.sampled_from(["connect", "bind", "udp", "resolve", "resolve_ptr"]),
            min_size=1,
        ),
        "to": st.lists(_destinations, min_size=1, max_size=4),
        "ports": st.lists(_ports, min_size=1, max_size=4),
    },
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["allow", "deny", "10.0.0.0/8", "4a", "connect", "1-2"]),
)
_junk = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=10,
)
_junkTables = st.dictionaries(
    st.sampled_from(
        [
            "action",
            "name",
            "from",
            "users",
            "versions",
            "commands",
            "to",
            "ports",
            "bind",
            "other",
        ]
    ),
    _junk,
)


def _expectedNetwork(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    The network a CIDR of C{from} is read as: an IPv4-mapped one as IPv4.
    """
    network = ipaddress.ip_network(cidr)
    mapped = ipaddress.IPv6Network("::ffff:0:0/96")
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(mapped):
        host = ipaddress.IPv6Address(network.network_address).ipv4_mapped
        return ipaddress.IPv4Network((host, network.prefixlen - 96))
    return network


class PropertyTests(SynchronousTestCase):
    """
    Property tests of L{parseRules}.
    """

    @_settings
    @given(tables=st.lists(_ruleTables, max_size=5))
    def test_validRules(self, tables: list[dict[str, object]]) -> None:
        """
        Valid rule tables parse into rules that keep what they say (or, if a
        catch-all is not last, are refused for that), and a policy of them
        decides any request.
        """
        tables = [{"to": "x.example", **table} for table in tables[:-1]] + tables[-1:]
        rules = parseRules(tables, GROUPS, SOURCE)
        self.assertEqual(len(rules), len(tables))
        for index, (rule, table) in enumerate(zip(rules, tables, strict=True), 1):
            self.assertEqual(rule.index, index)
            self.assertEqual(rule.allow, table["action"] == "allow")
            self.assertEqual(rule.name, table.get("name"))
            if "versions" in table:
                self.assertEqual(
                    rule.versions,
                    {str(v) for v in table["versions"]},  # type: ignore[attr-defined]
                )
            else:
                self.assertIsNone(rule.versions)
            if "users" in table:
                self.assertEqual(rule.users, set(table["users"]))  # type: ignore[call-overload]
            if "from" in table:
                self.assertEqual(
                    rule.clients,
                    tuple(_expectedNetwork(c) for c in table["from"]),  # type: ignore[attr-defined]
                )
            if "ports" in table:
                assert rule.ports is not None
                for given_, (low, high) in zip(
                    table["ports"],
                    rule.ports,
                    strict=True,  # type: ignore[call-overload]
                ):
                    self.assertIn(str(low), str(given_))
                    self.assertLessEqual(low, high)
        policy = Policy(rules, GROUPS, frozenset(), True)
        for host in ("198.51.100.1", "x.example", "::ffff:10.0.0.1"):
            decision = policy.decide(request(host=host, user="alice"), "10.0.0.1")
            self.assertIsNotNone(decision.allowed)

    @_settings
    @given(tables=st.lists(_junkTables, max_size=3))
    def test_junk(self, tables: list[dict[str, object]]) -> None:
        """
        Arbitrary tables either parse or raise L{PolicyError} with a one-line
        message naming the file.
        """
        try:
            parseRules(tables, GROUPS, SOURCE)
        except PolicyError as e:
            self.assertTrue(str(e).startswith(f"{SOURCE}: [[rules]]"), str(e))
            self.assertNotIn("\n", str(e))
