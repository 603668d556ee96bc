"""
Upstream chaining without the network: which route a request takes, the
reply code each upstream failure maps to, the clients' cache, the rules'
C{via}, C{--upstream} and the session log's hop.
"""

from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import defer, error, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted import tap
from socks_twisted._wire import SOCKS5ReplyCode
from socks_twisted.client import SOCKSProxy
from socks_twisted.client._endpoints import SOCKSReactor
from socks_twisted.config import ConfigError, loadConfig
from socks_twisted.errors import (
    AuthenticationFailedError,
    ConnectionNotAllowedError,
    ConnectionRefusedError,
    GeneralServerFailureError,
    HostUnreachableError,
    NoAcceptableMethodsError,
    SOCKS4IdentdMismatchError,
    SOCKS4RejectedError,
    SOCKSProtocolError,
    TTLExpiredError,
    UnknownReplyError,
)
from socks_twisted.policy import (
    DIRECT,
    Decision,
    Policy,
    PolicyError,
    Request,
    parseRules,
)
from socks_twisted.server import ServerSettings
from socks_twisted.server._command import RefusedError
from socks_twisted.server._sessionlog import logSession
from socks_twisted.server._upstream import (
    MAX_UPSTREAMS,
    Upstream,
    UpstreamProxies,
    upstreamFor,
    upstreamRefusal,
)

from ..test_reload import ConfigFileTestCase
from ..test_tap import memoryReactor

_REACTOR = cast(SOCKSReactor, reactor)


def request(
    host: str = "192.0.2.1", port: int = 80, command: str = "connect"
) -> Request:
    """
    A request from 127.0.0.1, user alice, as the rules see it.
    """
    return Request("127.0.0.1", "alice", "5", command, host, port)


def policy(*rules: dict[str, object]) -> Policy:
    """
    The rules C{rules}, with the built-in ones.
    """
    return Policy(parseRules(list(rules), {}, "test.toml"), {}, (), False)


@dataclass
class FakeNetwork:
    """
    Only what choosing a route uses: the upstream maker, recording calls.
    """

    made: list[tuple[str, float]] = field(default_factory=list)
    upstreams: bool = True

    @property
    def upstream(self) -> Any:
        if not self.upstreams:
            return None

        def make(url: str, timeout: float) -> SOCKSProxy:
            self.made.append((url, timeout))
            return SOCKSProxy.fromURL(_REACTOR, url)

        return make


@dataclass
class FakeContext:
    """
    Only what choosing a route reads of a session.
    """

    policy: Policy
    policyRequest: Request
    settings: ServerSettings = field(default_factory=ServerSettings)
    network: FakeNetwork = field(default_factory=FakeNetwork)
    ownAddresses: frozenset[tuple[str, int]] = frozenset({("127.0.0.1", 1080)})

    @property
    def decision(self) -> Decision:
        """
        The session's decision, as it makes it.
        """
        asked = self.policyRequest
        return self.policy.decide(asked, destinationKnown=asked.command != "udp")


def route(context: FakeContext) -> Upstream | None:
    return upstreamFor(cast(Any, context))


class RouteTests(SynchronousTestCase):
    """
    L{upstreamFor}: a rule's via, else --upstream, else direct.
    """

    def test_directByDefault(self) -> None:
        self.assertIsNone(route(FakeContext(policy(), request())))

    def test_serverWide(self) -> None:
        """
        --upstream routes every request; the location hides credentials;
        the client is made with the connect timeout.
        """
        context = FakeContext(
            policy(),
            request(),
            ServerSettings(upstream="socks5h://u:secret@127.0.0.1:1081"),
        )
        upstream = route(context)
        assert upstream is not None
        self.assertEqual(upstream.location, "socks5h://127.0.0.1:1081")
        self.assertEqual(
            context.network.made, [("socks5h://u:secret@127.0.0.1:1081", 30.0)]
        )
        self.assertFalse(upstream.proxy.resolveLocally)

    def test_ruleVia(self) -> None:
        """
        The allowing rule's via wins over --upstream, and "direct" bypasses
        it.
        """
        rules = policy(
            {"action": "allow", "ports": 22, "via": "direct"},
            {"action": "allow", "ports": 80, "via": "socks4://10.0.0.1:1080"},
        )
        settings = ServerSettings(upstream="socks5://127.0.0.1:1081")
        self.assertIsNone(route(FakeContext(rules, request(port=22), settings)))
        via80 = route(FakeContext(rules, request(port=80), settings))
        assert via80 is not None
        self.assertEqual(via80.location, "socks4://10.0.0.1:1080")
        other = route(FakeContext(rules, request(port=443), settings))
        assert other is not None
        self.assertEqual(other.location, "socks5://127.0.0.1:1081")

    def test_nameByName(self) -> None:
        """
        For a name, the rule matching it by name chooses, as for bind.
        """
        rules = policy(
            {"action": "allow", "to": ".example", "via": "socks5h://127.0.0.1:9"},
        )
        chosen = route(FakeContext(rules, request(host="www.example")))
        assert chosen is not None
        self.assertEqual(chosen.location, "socks5h://127.0.0.1:9")
        self.assertIsNone(route(FakeContext(rules, request(host="other.test"))))

    def test_udpRuleWithoutDestination(self) -> None:
        """
        A UDP association's route is the first rule for who asks with no
        to or ports.
        """
        rules = policy(
            {"action": "allow", "commands": "udp", "ports": 53, "via": "direct"},
            {"action": "allow", "commands": "udp", "via": "socks5://127.0.0.1:9"},
        )
        chosen = route(
            FakeContext(rules, request(host="0.0.0.0", port=0, command="udp"))
        )
        assert chosen is not None
        self.assertEqual(chosen.location, "socks5://127.0.0.1:9")

    def test_noUpstreamMaker(self) -> None:
        """
        A network that cannot reach upstreams refuses with 0x01.
        """
        context = FakeContext(
            policy(),
            request(),
            ServerSettings(upstream="socks5://127.0.0.1:1"),
            FakeNetwork(upstreams=False),
        )
        with self.assertRaises(RefusedError) as caught:
            route(context)
        self.assertEqual(caught.exception.code, SOCKS5ReplyCode.GENERAL_FAILURE)

    def test_itself(self) -> None:
        """
        An upstream at one of the server's own addresses: 0x01, no loop.
        """
        context = FakeContext(
            policy(), request(), ServerSettings(upstream="socks5://127.0.0.1:1080")
        )
        with self.assertRaises(RefusedError) as caught:
            route(context)
        self.assertEqual(caught.exception.code, SOCKS5ReplyCode.GENERAL_FAILURE)
        self.assertEqual(context.network.made, [])

    def test_badSettingsURL(self) -> None:
        """
        An embedding program's bad URL refuses with 0x01.
        """
        context = FakeContext(policy(), request(), ServerSettings(upstream="http://x"))
        with self.assertRaises(RefusedError) as caught:
            route(context)
        self.assertEqual(caught.exception.code, SOCKS5ReplyCode.GENERAL_FAILURE)


class DecideByNameTests(SynchronousTestCase):
    """
    L{Policy.decideByName}: what can be decided of a name never resolved
    here.
    """

    def test_addressRulesPassedOver(self) -> None:
        """
        Rules only an address could match are passed over (the built-in
        denial of the server's own addresses among them); a rule matching
        the name decides.
        """
        rules = policy(
            {"action": "deny", "to": "10.0.0.0/8"},
            {"action": "deny", "to": ".blocked.example"},
        )
        self.assertTrue(rules.decideByName(request(host="ok.example")).allowed)
        denied = rules.decideByName(request(host="a.blocked.example"))
        self.assertFalse(denied.allowed)
        assert denied.rule is not None
        self.assertEqual(denied.rule.index, 2)
        # The full decision cannot be told before resolution.
        self.assertIsNone(rules.decide(request(host="ok.example")).allowed)


class MappingTests(SynchronousTestCase):
    """
    L{upstreamRefusal}: the reply code for each way an upstream fails.
    """

    def code(self, exception: BaseException, url: str = "socks5://h:1") -> int:
        upstream = Upstream(SOCKSProxy.fromURL(_REACTOR, url), "socks5://h:1")
        return int(upstreamRefusal(Failure(exception), upstream, "CONNECT x").code)

    def test_socks5CodesPassedOn(self) -> None:
        for exception, code in [
            (GeneralServerFailureError(), 1),
            (ConnectionNotAllowedError(), 2),
            (HostUnreachableError(), 4),
            (ConnectionRefusedError(), 5),
            (TTLExpiredError(), 6),
        ]:
            self.assertEqual(self.code(exception), code)

    def test_socks4(self) -> None:
        """
        SOCKS4's 91 does not say who refused: 0x01; identd failures 0x02.
        """
        self.assertEqual(self.code(SOCKS4RejectedError(), "socks4://h"), 1)
        self.assertEqual(self.code(SOCKS4IdentdMismatchError(), "socks4://h"), 2)

    def test_upstreamItself(self) -> None:
        """
        The upstream unreachable, refusing our credentials, breaking the
        protocol, or answering an unknown code: 0x01; a timeout: 0x06.
        """
        for exception in [
            error.ConnectionRefusedError(),
            error.DNSLookupError("upstream.invalid"),
            AuthenticationFailedError(),
            NoAcceptableMethodsError(),
            SOCKSProtocolError(),
            UnknownReplyError(0x42),
        ]:
            self.assertEqual(self.code(exception), 1, exception)
        self.assertEqual(self.code(error.TimeoutError()), 6)
        self.assertEqual(self.code(defer.TimeoutError()), 6)

    def test_reasonNamesUpstreamWithoutPassword(self) -> None:
        upstream = Upstream(
            SOCKSProxy.fromURL(_REACTOR, "socks5://u:hunter2@h:1"), "socks5://h:1"
        )
        refusal = upstreamRefusal(
            Failure(AuthenticationFailedError()), upstream, "CONNECT x:1"
        )
        self.assertIn("upstream socks5://h:1", refusal.reason)
        self.assertNotIn("hunter2", refusal.reason)


class UpstreamProxiesTests(SynchronousTestCase):
    """
    L{UpstreamProxies}: one client per URL and timeout, a bounded number.
    """

    def test_cached(self) -> None:
        proxies = UpstreamProxies(_REACTOR)
        first = proxies("socks5://127.0.0.1:1081", 30.0)
        self.assertIs(proxies("socks5://127.0.0.1:1081", 30.0), first)
        self.assertIsNot(proxies("socks5://127.0.0.1:1081", 5.0), first)

    def test_bounded(self) -> None:
        proxies = UpstreamProxies(_REACTOR)
        first = proxies("socks5://127.0.0.1:1", 1.0)
        for port in range(2, MAX_UPSTREAMS + 2):
            proxies(f"socks5://127.0.0.1:{port}", 1.0)
        self.assertIsNot(proxies("socks5://127.0.0.1:1", 1.0), first)


class RuleViaTests(ConfigFileTestCase):
    """
    A rule's via in the configuration file.
    """

    def test_parsed(self) -> None:
        rules = parseRules(
            [
                {"action": "allow", "ports": 1, "via": "DIRECT"},
                {"action": "allow", "via": "socks5h://u:p@127.0.0.1:1081"},
            ],
            {},
            "f.toml",
        )
        self.assertEqual(rules[0].via, DIRECT)
        self.assertEqual(rules[1].via, "socks5h://u:p@127.0.0.1:1081")
        self.assertNotIn("u:p", repr(rules[1]))

    def test_errors(self) -> None:
        """
        A bad via is one line naming the rule and the key, never the
        password.
        """
        cases: list[tuple[dict[str, object], str]] = [
            ({"action": "allow", "via": "http://h"}, "unknown proxy scheme"),
            ({"action": "allow", "via": 5}, "not a proxy URL"),
            ({"action": "deny", "via": "direct"}, "only a rule that allows"),
            (
                {"action": "allow", "via": "socks4://u:secret@h"},
                "no password",
            ),
        ]
        for table, problem in cases:
            with self.assertRaises(PolicyError) as caught:
                parseRules([table], {}, "f.toml")
            message = str(caught.exception)
            self.assertIn("f.toml: [[rules]] #1 key 'via'", message)
            self.assertIn(problem, message)
            self.assertNotIn("secret", message)
            self.assertNotIn("\n", message)

    def test_configFile(self) -> None:
        path = self.write('[[rules]]\naction = "allow"\nvia = "socks9://h"\n')
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path)
        self.assertIn("key 'via'", str(caught.exception))

    def test_reload(self) -> None:
        """
        A reload applies new vias and a new [server] upstream; a bad one
        keeps the running configuration.
        """
        from socks_twisted._reload import Reloader
        from socks_twisted.server import SOCKSServerFactory

        path = self.write('[server]\nupstream = "socks5://127.0.0.1:1"\n')
        config = loadConfig(path)
        factory = SOCKSServerFactory(
            MemoryReactorClock(),
            settings=ServerSettings(upstream="socks5://127.0.0.1:1"),
        )
        factory.setRules(config.rules, config.groups)
        reloader = Reloader(
            config,
            factory,
            commandLine=frozenset(),
            checker=None,
            publicListener=False,
        )
        self.write(
            '[server]\nupstream = "socks5h://127.0.0.1:2"\n'
            '[[rules]]\naction = "allow"\nports = 22\nvia = "direct"\n'
        )
        self.assertTrue(reloader.reload())
        self.assertEqual(factory.settings.upstream, "socks5h://127.0.0.1:2")
        self.assertEqual(factory.policy.viaFor(request(port=22)), DIRECT)
        self.write('[server]\nupstream = "nonsense"\n')
        with capturedLogs() as events:
            self.assertFalse(reloader.reload())
        self.assertIn("upstream", "".join(formatEvent(e) for e in events))
        self.assertEqual(factory.settings.upstream, "socks5h://127.0.0.1:2")
        self.write("")
        self.assertTrue(reloader.reload())
        self.assertIsNone(factory.settings.upstream)


class OptionTests(ConfigFileTestCase):
    """
    C{--upstream}, on the command line and in [server].
    """

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options(memoryReactor())
        options.parseOptions(list(argv))
        return options

    def test_checked(self) -> None:
        options = self.parse("--upstream", "socks5h://u:p@127.0.0.1:1081")
        self.assertEqual(options["upstream"], "socks5h://u:p@127.0.0.1:1081")
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--upstream", "socks5://u:secret@h:99999")
        self.assertIn("--upstream: ", str(caught.exception))
        self.assertNotIn("secret", str(caught.exception))

    def test_serverTable(self) -> None:
        path = self.write('[server]\nupstream = "socks4a://127.0.0.1:1080"\n')
        self.assertEqual(
            self.parse("--config", path)["upstream"], "socks4a://127.0.0.1:1080"
        )


class SessionLogTests(SynchronousTestCase):
    """
    The session log names the hop.
    """

    def test_via(self) -> None:
        fields: dict[str, Any] = dict(
            session="1",
            client="127.0.0.1:5",
            user=None,
            version="5",
            command="CONNECT",
            target=("127.0.0.1", 80),
            dialled=None,
            outbound=None,
            reply=0,
            outcome="success",
            rule=None,
            bytesFromClient=0,
            bytesToClient=0,
            duration=0.0,
            reason="",
        )
        with capturedLogs() as events:
            logSession(Logger(), **fields)
            logSession(
                Logger(),
                **fields,
                via="socks5://127.0.0.1:1081",
                viaBound="127.0.0.1:4000",
            )
        direct, chained = (formatEvent(e) for e in events)
        self.assertNotIn("via=", direct)
        self.assertIn(
            " via=upstream=socks5://127.0.0.1:1081 upstream_bound=127.0.0.1:4000 ",
            chained,
        )
        self.assertEqual(events[1]["via"], "socks5://127.0.0.1:1081")
