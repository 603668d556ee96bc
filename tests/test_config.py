"""
Tests for L{socks_twisted.config}: reading C{twistd socks --config} files.
"""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.config import Config, ConfigError, Limits, loadConfig, parseSize
from socks_twisted.policy import Destinations, Policy, Request, Rule

# Trial runs each test in a fresh _trial_temp, where an example database
# would never be read again.
_settings = settings(max_examples=300, deadline=None, database=None)

EXAMPLE = """\
[server]                      # any long option of `twistd socks`
port = ["tcp:1080:interface=0.0.0.0"]
handshake-timeout = 30

[users]
file = "/etc/socks/users"     # htpasswd format, one "name:hash" a line
groups = { staff = ["alice", "bob"] }

[limits]
sessions-per-client = 64
sessions-per-user = 32
new-sessions-per-second-per-client = 20
auth-failures-per-minute-per-client = 10
bandwidth-per-session = "10MB"
bandwidth-per-user = "50MB"

[[rules]]                     # ordered; the first rule that matches decides
action = "deny"
to = ["loopback", "link-local", "10.0.0.0/8"]

[[rules]]
action = "allow"
name = "staff web"            # optional, shown in denial logs
from = ["192.0.2.0/24"]       # client addresses (CIDR)
users = ["group:staff", "carol"]
versions = [5]                # 4, "4a", 5
commands = ["connect", "udp"] # connect, bind, udp
to = [".example.com", "example.org", "198.51.100.0/24"]
ports = [80, 443, "8000-8999"]
bind = "192.0.2.10"

[[rules]]
action = "deny"
"""


class ConfigFileMixin(SynchronousTestCase):
    """
    Writes configuration files.
    """

    def write(self, text: str | bytes, name: str = "socks.toml") -> str:
        """
        Write C{text} to a file in a fresh directory.

        @return: The file's path.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
        return path


class LoadTests(ConfigFileMixin):
    """
    Good files.
    """

    def test_example(self) -> None:
        """
        The documented example loads into the expected values.
        """
        path = self.write(EXAMPLE)
        config = loadConfig(path)
        self.assertEqual(config.path, path)
        self.assertEqual(
            dict(config.server),
            {"port": ["tcp:1080:interface=0.0.0.0"], "handshake-timeout": 30},
        )
        self.assertEqual(config.usersFile, "/etc/socks/users")
        self.assertEqual(dict(config.groups), {"staff": frozenset({"alice", "bob"})})
        self.assertEqual(
            config.limits,
            Limits(
                sessionsPerClient=64,
                sessionsPerUser=32,
                newSessionsPerSecondPerClient=20.0,
                authFailuresPerMinutePerClient=10,
                bandwidthPerSession=10_000_000,
                bandwidthPerUser=50_000_000,
            ),
        )
        self.assertEqual(
            config.rules,
            (
                Rule(
                    index=1,
                    name=None,
                    allow=False,
                    to=Destinations(
                        networks=(ipaddress.ip_network("10.0.0.0/8"),),
                        sets=frozenset({"loopback", "link-local"}),
                    ),
                ),
                Rule(
                    index=2,
                    name="staff web",
                    allow=True,
                    clients=(ipaddress.ip_network("192.0.2.0/24"),),
                    users=frozenset({"group:staff", "carol"}),
                    versions=frozenset({"5"}),
                    commands=frozenset({"connect", "udp"}),
                    to=Destinations(
                        networks=(ipaddress.ip_network("198.51.100.0/24"),),
                        names=frozenset({"example.org"}),
                        suffixes=frozenset({"example.com"}),
                    ),
                    ports=((80, 80), (443, 443), (8000, 8999)),
                    bind="192.0.2.10",
                ),
                Rule(index=3, name=None, allow=False),
            ),
        )
        self.assertTrue(config.catchAll)
        policy = Policy(config.rules, config.groups, frozenset(), True)
        decision = policy.decide(
            Request("192.0.2.7", "alice", "5", "connect", "www.example.com", 443),
            "203.0.113.1",
        )
        self.assertTrue(decision.allowed)
        self.assertEqual(decision.bind, "192.0.2.10")

    def test_empty(self) -> None:
        """
        An empty file is no settings, no limits and no rules.
        """
        config = loadConfig(self.write(""))
        self.assertEqual(config, Config(path=config.path))
        self.assertFalse(config.catchAll)
        self.assertEqual(config.limits, Limits())

    def test_relativeUsersFile(self) -> None:
        """
        A relative C{[users] file} is relative to the configuration file's
        directory.
        """
        path = self.write('[users]\nfile = "users"\n')
        config = loadConfig(path)
        self.assertEqual(
            config.usersFile,
            os.path.join(os.path.dirname(os.path.abspath(path)), "users"),
        )

    def test_zeroIsNoLimit(self) -> None:
        """
        0 for any limit means no limit.
        """
        config = loadConfig(
            self.write(
                "[limits]\n"
                "sessions-per-client = 0\n"
                "sessions-per-user = 0\n"
                "new-sessions-per-second-per-client = 0.0\n"
                "auth-failures-per-minute-per-client = 0\n"
                'bandwidth-per-session = "0"\n'
                "bandwidth-per-user = 0\n"
            )
        )
        self.assertEqual(config.limits, Limits())

    def test_rateAndSizes(self) -> None:
        """
        A rate may be fractional; a size may be a number of bytes.
        """
        config = loadConfig(
            self.write(
                "[limits]\n"
                "new-sessions-per-second-per-client = 0.5\n"
                "bandwidth-per-session = 65536\n"
                'bandwidth-per-user = "1.5MiB"\n'
            )
        )
        self.assertEqual(
            config.limits,
            Limits(
                newSessionsPerSecondPerClient=0.5,
                bandwidthPerSession=65536,
                bandwidthPerUser=1572864,
            ),
        )

    def test_serverValues(self) -> None:
        """
        C{[server]} takes any key with scalar values or arrays of them, as
        given.
        """
        config = loadConfig(
            self.write(
                "[server]\n"
                "allow-socks4-with-auth = true\n"
                "idle-timeout = 1.5\n"
                'external-address = "192.0.2.1"\n'
                "port = []\n"
            )
        )
        self.assertEqual(
            dict(config.server),
            {
                "allow-socks4-with-auth": True,
                "idle-timeout": 1.5,
                "external-address": "192.0.2.1",
                "port": [],
            },
        )


# Each bad file: its text, and what the message must contain besides the
# file's path: the table and the key (or, for a syntax error, the position).
BAD_FILES: list[tuple[str, str, list[str]]] = [
    ("unknown table", "[sever]\nport = 1\n", ["[sever]", "unknown table"]),
    (
        "unknown top-level key",
        "verbose = true\n",
        ["key 'verbose'", "unknown top-level key"],
    ),
    (
        "unknown key in [users]",
        '[users]\nfiles = "x"\n',
        ["[users] key 'files'", "unknown key"],
    ),
    (
        "unknown key in [limits]",
        "[limits]\nsessions = 5\n",
        ["[limits] key 'sessions'", "unknown key"],
    ),
    (
        "unknown key in [[rules]]",
        '[[rules]]\naction = "allow"\nform = ["10.0.0.0/8"]\n',
        ["[[rules]] #1 key 'form'", "unknown key"],
    ),
    ("[server] not a table", "server = 5\n", ["key 'server'", "[server]"]),
    (
        "[server] nested table",
        "[server]\nport = { a = 1 }\n",
        ["[server] key 'port'", "a table"],
    ),
    (
        "[server] date",
        "[server]\nport = 2024-01-01\n",
        ["[server] key 'port'", "date"],
    ),
    (
        "[server] array of tables",
        "[server]\nport = [{ a = 1 }]\n",
        ["[server] key 'port'", "a table in an array"],
    ),
    ("users file not a string", "[users]\nfile = 5\n", ["[users] key 'file'"]),
    ("users file empty", '[users]\nfile = ""\n', ["[users] key 'file'"]),
    (
        "group named with a colon",
        '[users]\ngroups = { "a:b" = ["alice"] }\n',
        ["[users] key 'groups'", "'a:b'"],
    ),
    (
        "groups not a table",
        '[users]\ngroups = ["a"]\n',
        ["[users] key 'groups'", "an array"],
    ),
    (
        "group not a list",
        '[users]\ngroups = { staff = "alice" }\n',
        ["[users] key 'groups'", "'staff'"],
    ),
    (
        "group member with a colon",
        '[users]\ngroups = { staff = ["a:b"] }\n',
        ["[users] key 'groups'", "'staff'"],
    ),
    (
        "sessions-per-client a string",
        '[limits]\nsessions-per-client = "64"\n',
        ["[limits] key 'sessions-per-client'", "'64'"],
    ),
    (
        "sessions-per-user negative",
        "[limits]\nsessions-per-user = -1\n",
        ["[limits] key 'sessions-per-user'", "-1"],
    ),
    (
        "sessions-per-user a float",
        "[limits]\nsessions-per-user = 1.5\n",
        ["[limits] key 'sessions-per-user'", "1.5"],
    ),
    (
        "rate a boolean",
        "[limits]\nnew-sessions-per-second-per-client = true\n",
        ["[limits] key 'new-sessions-per-second-per-client'", "True"],
    ),
    (
        "rate infinite",
        "[limits]\nnew-sessions-per-second-per-client = inf\n",
        ["[limits] key 'new-sessions-per-second-per-client'", "inf"],
    ),
    (
        "bad size",
        '[limits]\nbandwidth-per-session = "10XB"\n',
        ["[limits] key 'bandwidth-per-session'", "'10XB'"],
    ),
    (
        "size in bits",
        '[limits]\nbandwidth-per-user = "10Mb"\n',
        ["[limits] key 'bandwidth-per-user'", "bits"],
    ),
    (
        "size a float",
        "[limits]\nbandwidth-per-user = 1.5\n",
        ["[limits] key 'bandwidth-per-user'", "a float"],
    ),
    (
        "rules not an array of tables",
        "rules = 5\n",
        ["[[rules]]", "key 'rules'"],
    ),
    (
        "rules a single table",
        '[rules]\naction = "allow"\n',
        ["[[rules]]", "key 'rules'"],
    ),
    (
        "rule without action",
        '[[rules]]\nto = ["10.0.0.0/8"]\n',
        ["[[rules]] #1 key 'action'", "missing"],
    ),
    (
        "action maybe",
        '[[rules]]\naction = "maybe"\n',
        ["[[rules]] #1 key 'action'", "'maybe'"],
    ),
    (
        "bad CIDR",
        '[[rules]]\naction = "deny"\nto = ["x.example"]\n'
        '[[rules]]\naction = "deny"\nto = ["10.0.0.0/33"]\n',
        [
            "[[rules]] #2 key 'to': '10.0.0.0/33' is not a CIDR, a name, "
            "a .suffix or a named set"
        ],
    ),
    (
        "bad client CIDR",
        '[[rules]]\naction = "deny"\nfrom = ["192.0.2.0/24", "192.0.2.300"]\n',
        ["[[rules]] #1 key 'from'", "'192.0.2.300'"],
    ),
    (
        "reversed port range",
        '[[rules]]\naction = "allow"\nports = ["9-1"]\n',
        ["[[rules]] #1 key 'ports'", "'9-1'"],
    ),
    (
        "port 70000",
        '[[rules]]\naction = "allow"\nports = [70000]\n',
        ["[[rules]] #1 key 'ports'", "70000"],
    ),
    (
        "wrong type in rule",
        '[[rules]]\naction = "allow"\nversions = [5.0]\n',
        ["[[rules]] #1 key 'versions'", "5.0"],
    ),
    (
        "missing group",
        '[users]\ngroups = { staff = ["alice"] }\n'
        '[[rules]]\naction = "allow"\nusers = ["group:admins"]\n',
        ["[[rules]] #1 key 'users'", "group:admins"],
    ),
    (
        "TOML syntax error",
        "[limits]\nsessions-per-client = = 5\n",
        ["not valid TOML", "line 2"],
    ),
    ("not UTF-8", "", ["not valid TOML", "UTF-8"]),
]


class BadFileTests(ConfigFileMixin):
    """
    Bad files are refused whole, with a message that says where.
    """

    def test_badFiles(self) -> None:
        """
        Each bad file gives a one-line L{ConfigError} naming the file, the
        table and the key.
        """
        for description, text, expected in BAD_FILES:
            content: str | bytes = text
            if description == "not UTF-8":
                content = b'[server]\nport = "\xff"\n'
            path = self.write(content)
            with self.assertRaises(ConfigError, msg=description) as caught:
                loadConfig(path)
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"{path}: "), (description, message))
            self.assertNotIn("\n", message, description)
            for part in expected:
                self.assertIn(part, message, description)

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is an error naming it and saying why.
        """
        path = os.path.join(self.mktemp(), "nothing.toml")
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path)
        self.assertEqual(
            str(caught.exception), f"{path}: cannot read it (No such file or directory)"
        )

    def test_directory(self) -> None:
        """
        A directory is not a file.
        """
        path = self.mktemp()
        os.makedirs(path)
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path)
        self.assertTrue(str(caught.exception).startswith(f"{path}: cannot read it"))


class ParseSizeTests(SynchronousTestCase):
    """
    L{parseSize}.
    """

    def test_examples(self) -> None:
        """
        Decimal and binary units, either case of the prefix, an optional
        C{B}, fractions.
        """
        cases: list[tuple[int | str, int]] = [
            (0, 0),
            (1234, 1234),
            ("0", 0),
            ("0MB", 0),
            ("100", 100),
            ("100B", 100),
            ("512kB", 512_000),
            ("512KB", 512_000),
            ("512k", 512_000),
            ("10MB", 10_000_000),
            ("10 MB", 10_000_000),
            ("1.5GB", 1_500_000_000),
            ("2TB", 2 * 10**12),
            ("100KiB", 102_400),
            ("1MiB", 1_048_576),
            ("1.5MiB", 1_572_864),
            ("1GiB", 2**30),
            ("1TiB", 2**40),
            (".5kB", 500),
            ("1.0005kB", 1000),
        ]
        for value, expected in cases:
            self.assertEqual(parseSize(value), expected, value)

    def test_errors(self) -> None:
        """
        Anything else is a L{ValueError}.
        """
        for value in [
            -1,
            True,
            1.5,
            "",
            "MB",
            "-1MB",
            "10XB",
            "10Mb",
            "10kb",
            "10 M B",
            "1e6",
            "0.1B",
            "0.0001kB",
            "10MBs",
        ]:
            with self.assertRaises(ValueError, msg=repr(value)):
                parseSize(value)  # type: ignore[arg-type]

    @_settings
    @given(
        number=st.integers(0, 10**12),
        unit=st.sampled_from(
            [
                ("", 1),
                ("B", 1),
                ("kB", 10**3),
                ("KB", 10**3),
                ("MB", 10**6),
                ("M", 10**6),
                ("GB", 10**9),
                ("KiB", 2**10),
                ("MiB", 2**20),
                ("GiB", 2**30),
            ]
        ),
    )
    def test_wholeNumbers(self, number: int, unit: tuple[str, int]) -> None:
        """
        A whole number with a unit is that many units.
        """
        suffix, multiplier = unit
        self.assertEqual(parseSize(f"{number}{suffix}"), number * multiplier)
        self.assertEqual(parseSize(number), number)

    @_settings
    @given(
        number=st.decimals(
            min_value=Decimal("0.001"),
            max_value=Decimal(10**6),
            places=3,
            allow_nan=False,
            allow_infinity=False,
        ),
        unit=st.sampled_from([("kB", 10**3), ("MB", 10**6), ("MiB", 2**20)]),
    )
    def test_fractions(self, number: Decimal, unit: tuple[str, int]) -> None:
        """
        A fraction of a unit is rounded down to whole bytes.
        """
        suffix, multiplier = unit
        self.assertEqual(parseSize(f"{number}{suffix}"), int(number * multiplier))

    @_settings
    @given(value=st.one_of(st.text(max_size=12), st.integers(), st.floats()))
    def test_anything(self, value: object) -> None:
        """
        Any value gives a size, 0 or more, or a L{ValueError}.
        """
        try:
            size = parseSize(value)  # type: ignore[arg-type]
        except ValueError:
            return
        self.assertGreaterEqual(size, 0)
