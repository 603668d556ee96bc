# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Proxy URLs, the proxy environment variables and curl's C{NO_PROXY} rules.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.client import NoProxy, ProxyURL, parseProxyURL
from socks_twisted.client._environment import (
    noProxyFromEnvironment,
    proxyFromEnvironment,
)

#: URL, expected (scheme, host, port, username, password).
GOOD: list[tuple[str, tuple[str, str, int, bytes | None, bytes | None]]] = [
    ("socks5://127.0.0.1", ("socks5", "127.0.0.1", 1080, None, None)),
    ("socks5h://127.0.0.1:1081", ("socks5h", "127.0.0.1", 1081, None, None)),
    ("socks4://proxy.example", ("socks4", "proxy.example", 1080, None, None)),
    ("socks4a://proxy.example:9050", ("socks4a", "proxy.example", 9050, None, None)),
    ("socks5h://[::1]:1080", ("socks5h", "::1", 1080, None, None)),
    ("socks5://[2001:db8::1]", ("socks5", "2001:db8::1", 1080, None, None)),
    ("SOCKS5H://Proxy.Example", ("socks5h", "proxy.example", 1080, None, None)),
    ("socks5h://proxy.example:1080/", ("socks5h", "proxy.example", 1080, None, None)),
    (
        "socks5h://alice:s3cret@127.0.0.1:1080",
        ("socks5h", "127.0.0.1", 1080, b"alice", b"s3cret"),
    ),
    # Reserved characters, percent-encoded: space, +, /, :, @, %.
    (
        "socks5://a%40b:p%20a%2Bs%2Fs%3A%40%25@h",
        ("socks5", "h", 1080, b"a@b", b"p a+s/s:@%"),
    ),
    # "+" is not a space in userinfo.
    ("socks5://a+b:c+d@h", ("socks5", "h", 1080, b"a+b", b"c+d")),
    # Non-ASCII, percent-encoded UTF-8 or written as is.
    (
        "socks5h://j%C3%BCrgen:gr%C3%BC%C3%9F@h",
        ("socks5h", "h", 1080, "jürgen".encode(), "grüß".encode()),
    ),
    (
        "socks5h://jürgen:grüß@h",
        ("socks5h", "h", 1080, "jürgen".encode(), "grüß".encode()),
    ),
    # An @ in the password, unencoded: the last @ ends the userinfo.
    ("socks5://u:p@ss@h:1", ("socks5", "h", 1, b"u", b"p@ss")),
    ("socks5://alice@h", ("socks5", "h", 1080, b"alice", None)),
    ("socks5://alice:@h", ("socks5", "h", 1080, b"alice", b"")),
    ("socks4://alice@[::1]", ("socks4", "::1", 1080, b"alice", None)),
    ("socks4a://bob%20b:@h", ("socks4a", "h", 1080, b"bob b", None)),
    ("  socks5h://h:65535  ", ("socks5h", "h", 65535, None, None)),
]

#: URL, words the error message contains.
BAD: list[tuple[str, str]] = [
    ("http://proxy.example:3128", "unknown proxy scheme 'http'"),
    ("socks6://h", "unknown proxy scheme 'socks6'"),
    ("proxy.example:1080", "no scheme"),
    ("socks5://", "no host"),
    ("socks5://:1080", "no host"),
    ("socks5://alice:pw@", "no host"),
    ("socks5://[]:1080", "malformed"),
    ("socks5://[::1", "malformed"),
    ("socks5://h:0", "bad port"),
    ("socks5://h:65536", "bad port"),
    ("socks5://h:http", "bad port"),
    ("socks5://h:-1", "bad port"),
    ("socks5://h:", "empty port"),
    ("socks4://alice:secret@h", "socks4 has no password"),
    ("socks4a://alice:secret@h", "socks4a has no password"),
    ("socks5://:secret@h", "password but no user"),
    ("socks5://h/path", "no path"),
    ("socks5://h?q=1", "no path"),
    ("socks5://h#frag", "no path"),
    ("socks5://" + "a" * 300, "bad host"),
    ("socks4://a%00b@h", "NUL"),
]


class ParseProxyURLTests(SynchronousTestCase):
    """
    L{parseProxyURL}.
    """

    def test_good(self) -> None:
        """
        Each scheme, default and explicit ports, IPv6 literals and
        percent-decoded userinfo.
        """
        for url, (scheme, host, port, username, password) in GOOD:
            parsed = parseProxyURL(url)
            self.assertEqual(
                (
                    parsed.scheme,
                    parsed.host,
                    parsed.port,
                    parsed.username,
                    parsed.password,
                ),
                (scheme, host, port, username, password),
                url,
            )

    def test_versions(self) -> None:
        """
        socks5 and socks4 resolve locally (as curl does); socks5h and
        socks4a do not.
        """
        for scheme, version, local in [
            ("socks5", 5, True),
            ("socks5h", 5, False),
            ("socks4", 4, True),
            ("socks4a", 4, False),
        ]:
            parsed = parseProxyURL(f"{scheme}://h")
            self.assertEqual((parsed.version, parsed.resolveLocally), (version, local))

    def test_bad(self) -> None:
        """
        Every error is a L{ValueError} naming the problem.
        """
        for url, words in BAD:
            with self.assertRaises(ValueError, msg=url) as caught:
                parseProxyURL(url)
            self.assertIn(words, str(caught.exception), url)

    def test_passwordNotInErrorsOrRepr(self) -> None:
        """
        The password appears neither in error messages nor in the repr.
        """
        parsed = parseProxyURL("socks5://alice:hunter2@h")
        self.assertNotIn("hunter2", repr(parsed))
        for url in ["socks4://alice:hunter2@h", "socks5://alice:hunter2@h:99999"]:
            with self.assertRaises(ValueError) as caught:
                parseProxyURL(url)
            self.assertNotIn("hunter2", str(caught.exception))

    def test_notText(self) -> None:
        """
        Bytes are refused.
        """
        self.assertRaises(ValueError, parseProxyURL, b"socks5://h")


class ProxyFromEnvironmentTests(SynchronousTestCase):
    """
    L{proxyFromEnvironment} and L{noProxyFromEnvironment}: curl's
    precedence.
    """

    def find(self, environ: dict[str, str], scheme: str | None = "https") -> str | None:
        parsed = proxyFromEnvironment(environ, scheme)
        return None if parsed is None else f"{parsed.scheme}://{parsed.host}"

    def test_unset(self) -> None:
        """
        Nothing set, or only empty values: no proxy.
        """
        self.assertIsNone(self.find({}))
        self.assertIsNone(self.find({"ALL_PROXY": "", "https_proxy": " "}))

    def test_allProxy(self) -> None:
        """
        all_proxy wins over ALL_PROXY; either is used alone.
        """
        self.assertEqual(self.find({"ALL_PROXY": "socks5h://up"}), "socks5h://up")
        self.assertEqual(self.find({"all_proxy": "socks5://low"}), "socks5://low")
        self.assertEqual(
            self.find({"all_proxy": "socks5://low", "ALL_PROXY": "socks4://up"}),
            "socks5://low",
        )

    def test_schemeVariable(self) -> None:
        """
        The scheme's variable, when it holds a SOCKS URL, wins over
        ALL_PROXY; lowercase first.
        """
        environ = {
            "ALL_PROXY": "socks5://all",
            "HTTPS_PROXY": "socks5h://upper",
        }
        self.assertEqual(self.find(environ), "socks5h://upper")
        environ["https_proxy"] = "socks4a://lower"
        self.assertEqual(self.find(environ), "socks4a://lower")
        self.assertEqual(self.find(environ, scheme=None), "socks5://all")

    def test_httpLowercaseOnly(self) -> None:
        """
        For http, only http_proxy is read (curl ignores HTTP_PROXY, which
        CGI programs get from a request header).
        """
        environ = {"HTTP_PROXY": "socks5://evil", "ALL_PROXY": "socks5://all"}
        self.assertEqual(self.find(environ, "http"), "socks5://all")
        environ["http_proxy"] = "socks5h://good"
        self.assertEqual(self.find(environ, "HTTP"), "socks5h://good")

    def test_httpProxyPassedOver(self) -> None:
        """
        A scheme variable naming an HTTP proxy is passed over; ALL_PROXY is
        then used.
        """
        environ = {"https_proxy": "http://corp:3128"}
        self.assertIsNone(self.find(environ))
        environ["ALL_PROXY"] = "socks5h://all"
        self.assertEqual(self.find(environ), "socks5h://all")

    def test_badValues(self) -> None:
        """
        A bad SOCKS URL in the variable chosen, or ALL_PROXY naming another
        scheme, is a L{ValueError}.
        """
        self.assertRaises(ValueError, self.find, {"https_proxy": "socks5://h:0"})
        self.assertRaises(ValueError, self.find, {"ALL_PROXY": "http://corp:3128"})

    def test_noProxy(self) -> None:
        """
        no_proxy wins over NO_PROXY; an empty value is kept.
        """
        self.assertIsNone(noProxyFromEnvironment({}))
        self.assertEqual(noProxyFromEnvironment({"NO_PROXY": "a"}), "a")
        self.assertEqual(noProxyFromEnvironment({"NO_PROXY": "a", "no_proxy": ""}), "")

    def test_proxyURLType(self) -> None:
        """
        The result is a L{ProxyURL}.
        """
        self.assertIsInstance(
            proxyFromEnvironment({"ALL_PROXY": "socks5://h"}, None), ProxyURL
        )


class NoProxyTests(SynchronousTestCase):
    """
    L{NoProxy}: curl's C{NO_PROXY} rules.
    """

    def check(self, value: str | None, matches: list[str], misses: list[str]) -> None:
        rules = NoProxy(value)
        for host in matches:
            self.assertTrue(rules.bypasses(host), f"{value!r} should match {host!r}")
        for host in misses:
            self.assertFalse(rules.bypasses(host), f"{value!r} should miss {host!r}")

    def test_nothing(self) -> None:
        """
        None and the empty string bypass nothing.
        """
        self.check(None, [], ["example.com", "127.0.0.1", "localhost"])
        self.check("", [], ["example.com", "127.0.0.1"])
        self.check(" , ,", [], ["example.com"])

    def test_star(self) -> None:
        """
        C{*} alone bypasses every host.
        """
        self.check("*", ["example.com", "10.0.0.1", "::1"], [])
        self.check(" * ", ["example.com"], [])

    def test_domain(self) -> None:
        """
        A name matches itself and every host under it, not a host that
        merely ends with the same letters.
        """
        self.check(
            "example.com",
            ["example.com", "www.example.com", "a.b.example.com", "example.com."],
            ["notexample.com", "example.com.other", "example.co", "com"],
        )

    def test_leadingDot(self) -> None:
        """
        A leading dot: the domain and everything under it (curl strips it).
        """
        self.check(
            ".example.com",
            ["www.example.com", "foo.example.com", "example.com"],
            ["notexample.com"],
        )

    def test_caseAndTrailingDot(self) -> None:
        """
        Matching ignores case and trailing dots on both sides.
        """
        self.check(
            "Intranet.Example.",
            ["intranet.example", "HOST.INTRANET.EXAMPLE", "intranet.example."],
            ["example"],
        )

    def test_list(self) -> None:
        """
        Commas and blanks separate entries.
        """
        self.check(
            "localhost, .corp.example,10.0.0.1\tintranet",
            ["localhost", "a.corp.example", "10.0.0.1", "intranet", "x.intranet"],
            ["example.com", "10.0.0.2", "corp.example.org"],
        )

    def test_addresses(self) -> None:
        """
        An IP address matches that address (IPv6 in any spelling, with or
        without brackets around the host); a name is not resolved.
        """
        self.check(
            "127.0.0.1,::1,2001:db8::1",
            ["127.0.0.1", "::1", "[::1]", "0:0::1", "2001:DB8:0::1"],
            ["127.0.0.2", "localhost", "2001:db8::2"],
        )

    def test_cidr(self) -> None:
        """
        CIDR blocks match every address in them, IPv4 and IPv6; an address
        rule does not match names.
        """
        self.check(
            "10.0.0.0/8, 192.168.1.0/24, fd00::/8, 172.16.5.4/12",
            ["10.1.2.3", "192.168.1.200", "fd12::1", "[fdff::2]", "172.31.0.1"],
            ["11.0.0.1", "192.168.2.1", "fe80::1", "example.com", "10.example"],
        )

    def test_badCIDRIgnored(self) -> None:
        """
        A malformed CIDR entry is ignored, not fatal.
        """
        self.check("10.0.0.0/99, ok.example", ["ok.example"], ["10.0.0.1"])

    def test_port(self) -> None:
        """
        C{host:port} and C{[v6]:port} match only that port.
        """
        rules = NoProxy("example.com:8080, [::1]:443, 10.0.0.1:22")
        self.assertTrue(rules.bypasses("example.com", 8080))
        self.assertTrue(rules.bypasses("www.example.com", 8080))
        self.assertFalse(rules.bypasses("example.com", 443))
        self.assertFalse(rules.bypasses("example.com"))
        self.assertTrue(rules.bypasses("::1", 443))
        self.assertFalse(rules.bypasses("::1", 80))
        self.assertTrue(rules.bypasses("10.0.0.1", 22))
        self.assertFalse(rules.bypasses("10.0.0.1", 23))

    def test_portlessRuleMatchesAnyPort(self) -> None:
        """
        A rule without a port matches every port.
        """
        rules = NoProxy("example.com")
        self.assertTrue(rules.bypasses("example.com", 1))
        self.assertTrue(rules.bypasses("example.com", None))

    def test_emptyHost(self) -> None:
        """
        An empty host is never bypassed (except by C{*}).
        """
        self.assertFalse(NoProxy("example.com").bypasses(""))
        self.assertFalse(NoProxy("example.com").bypasses("."))

    def test_repr(self) -> None:
        """
        The repr shows the rules.
        """
        self.assertEqual(repr(NoProxy("a,b")), "NoProxy('a,b')")
