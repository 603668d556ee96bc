"""
The command line of C{twistd socks}: its options, checked and converted
(L{Options}); L{socks_twisted.tap} makes the service they describe.
"""

import importlib
import ipaddress
import os
import sys
import warnings
from typing import Any, cast

from twisted import copyright
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import AuthOptionMixin
from twisted.internet.interfaces import (
    IReactorSocket,
)
from twisted.python import usage

from . import __version__
from ._listen import (
    DescriptionError,
    InheritedSockets,
    Listener,
    execEnvironment,
    listenBacklog,
    listenerFor,
)
from ._proxyurl import parseProxyURL
from ._wire import ProtectionLevel
from ._workers import sharable, workerCount
from .config import Config, ConfigError, loadConfig
from .users import UsersFile, UsersFileError

DEFAULT_PORT = "tcp:1080:interface=127.0.0.1"

#: The values of C{--log-format}.
LOG_FORMATS = ("text", "json")


def logFormat(value: str) -> str:
    """
    Check a C{--log-format} value.

    @raise ValueError: It is not one of L{LOG_FORMATS}.
    """
    if value not in LOG_FORMATS:
        raise ValueError(f"{value!r}: use {' or '.join(LOG_FORMATS)}")
    return value


#: Why C{--auth unix} cannot work on this Python.
NO_SYSTEM_PASSWORDS = (
    "this Python cannot check system passwords (crypt and spwd were removed in 3.13)"
)


def canCheckSystemPasswords() -> bool:
    """
    Whether Twisted's C{unix} checker can work here: it hashes with
    C{crypt} and reads C{/etc/shadow} with C{spwd}.  Without them it refuses
    every login.

    @return: Whether both modules can be imported.
    """
    with warnings.catch_warnings():
        # Python 3.11 and 3.12 warn that both are going away.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            importlib.import_module("crypt")
            importlib.import_module("spwd")
        except ImportError:
            return False
    return True


def authProblem(description: str) -> str | None:
    """
    Find what makes an C{--auth} description unusable before its checker is
    built: Twisted's own checkers only warn, then refuse every login.

    @param description: The C{--auth} value, such as C{file:/etc/socks-users}.

    @return: The problem, or C{None} when none is known.
    """
    authType, _, argument = description.partition(":")
    if authType == "file":
        if not argument:
            return "needs the path of a file"
        try:
            with open(argument, "rb"):
                pass
        except FileNotFoundError:
            return "no such file"
        except IsADirectoryError:
            return "is a directory, not a file"
        except OSError as e:
            return f"cannot read it ({e.strerror})"
    if authType == "unix" and not canCheckSystemPasswords():
        return NO_SYSTEM_PASSWORDS
    return None


class Options(usage.Options, AuthOptionMixin):
    """
    Options of C{twistd socks}.
    """

    synopsis = "[options]"
    longdesc = (
        "A SOCKS4, SOCKS4a and SOCKS5 (RFC 1928) proxy server. --auth enables "
        "RFC 1929 username/password authentication through twisted.cred."
    )
    supportedInterfaces = (IUsernamePassword,)
    optFlags = [
        [
            "allow-socks4-with-auth",
            None,
            "With --auth, still serve SOCKS4/4a requests (they carry no password).",
        ],
        [
            "allow-public-unauthenticated",
            None,
            "Allow listening on a non-loopback address without --auth.",
        ],
        [
            "no-tor-resolve",
            None,
            "Refuse Tor's RESOLVE and RESOLVE_PTR commands (reply 7, command "
            "not supported); by default they are served, under the same "
            "rules and limits as CONNECT.",
        ],
    ]
    optParameters = [
        [
            "handshake-timeout",
            None,
            30.0,
            "Seconds a client has, in total, to finish its request.",
            float,
        ],
        [
            "connect-timeout",
            None,
            30.0,
            "Seconds allowed to reach a target, name resolution included.",
            float,
        ],
        [
            "relay",
            None,
            "auto",
            "How relayed bytes move: 'auto' (splice(2) between plain TCP "
            "connections on Linux, copying otherwise) or 'copy' (always "
            "through Python).",
            str,
        ],
        [
            "idle-timeout",
            None,
            0.0,
            "Close a session idle both ways this long (seconds); 0: never.",
            float,
        ],
        [
            "bind-timeout",
            None,
            120.0,
            "Seconds a BIND listener waits for its one peer.",
            float,
        ],
        [
            "udp-timeout",
            None,
            300.0,
            "End a UDP association idle both ways this long (seconds).",
            float,
        ],
        [
            "external-address",
            None,
            None,
            "The IP that BIND and UDP ASSOCIATE replies name (the public "
            "address behind NAT) instead of the address the client reached; "
            "one per family, comma-separated, for a node with both.",
        ],
        [
            "max-sessions",
            None,
            1024,
            "Sessions open at once; connections beyond are closed at once. "
            "Lowered, with a warning, to what the open-file limit allows.",
            int,
        ],
        [
            "metrics",
            None,
            None,
            "A server endpoint description to serve Prometheus metrics on, "
            "at GET /metrics, e.g. tcp:9101:interface=127.0.0.1.  It has no "
            "authentication: keep it on loopback or behind a proxy that "
            "checks who scrapes.  [default: no metrics endpoint]",
        ],
        [
            "log-format",
            None,
            "text",
            "text, or json: one JSON object a line, every event with its "
            "fields, written where the text would go.",
            logFormat,
        ],
        [
            "workers",
            None,
            1,
            "Worker processes serving the same ports, or 'auto' for one per "
            "usable core; with more than 1 this process supervises them.",
            workerCount,
        ],
        [
            "upstream",
            None,
            None,
            "Reach targets through this SOCKS proxy (CONNECT, BIND and UDP "
            "ASSOCIATE; UDP needs SOCKS5): a URL socks5://, socks5h:// (the "
            "upstream resolves names), socks4:// or socks4a://, with "
            "user:password@ for its authentication.  A rule's via overrides "
            "it.  [default: direct]",
        ],
        [
            "gssapi-keytab",
            None,
            None,
            "Offer SOCKS5 GSSAPI authentication (Kerberos, RFC 1961) with the "
            "service keys of this keytab, read once at start-up.",
        ],
        [
            "gssapi-service",
            None,
            "rcmd",
            "With --gssapi-keytab: the service name clients' tickets must be "
            "for (NAME/host, any host whose key is in the keytab).",
        ],
        [
            "gssapi-protection",
            None,
            "none,integrity,confidentiality",
            "With --gssapi-keytab: the GSS-API protection levels granted, "
            "comma-separated.  The client's requested level is granted when "
            "listed (and its context provides it), else the strongest listed "
            "one.  curl implements no protection: serve it with 'none'.",
        ],
        [
            "drain-timeout",
            None,
            10.0,
            "On SIGTERM, stop accepting and give open sessions this long "
            "(seconds) to end before cutting them; 0: cut at once.  A second "
            "SIGTERM, or SIGINT, cuts at once.",
            float,
        ],
    ]
    compData = usage.Completions(optActions={"port": usage.Completer()})

    def __init__(
        self,
        reactor: IReactorSocket | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        """
        @param listeners: Where to listen, instead of what the C{--port}
            options describe (a worker of C{--workers} adopts the sockets
            its supervisor opened).
        """
        usage.Options.__init__(self)
        self._listeners = listeners
        self["ports"] = []
        self["metricsListener"] = None
        self["config"] = None
        self["users"] = None
        self.reactor = reactor
        #: The long names of the options given on the command line.
        self.given: set[str] = set()

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse the command line, remembering which options it gave: they win
        over the configuration file.
        """
        args = sys.argv[1:] if options is None else options
        #: The command line as given: workers parse it again (--workers).
        self.argv = list(args)
        for arg in args:
            if arg == "--":
                break
            if arg.startswith("--"):
                self.given.add(arg[2:].split("=", 1)[0])
            elif arg.startswith("-p"):
                self.given.add("port")
        usage.Options.parseOptions(self, options)

    def opt_version(self) -> None:
        """
        Print the version of socks-twisted (and of Twisted) and exit.
        """
        print(f"socks-twisted {__version__} (Twisted {copyright.version})")
        sys.exit(0)

    def opt_config(self, path: str) -> None:
        """
        A TOML configuration file: options ([server]), users, limits and
        access rules (see the operator's guide).  The command line wins over
        its [server] table.  SIGHUP reloads it.
        """
        try:
            self["config"] = loadConfig(path)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None  # it names the file

    def opt_port(self, description: str) -> None:
        """
        A server endpoint description to listen on (repeatable), e.g.
        tcp:1080:interface=127.0.0.1, tcp6:1080:interface=\\:\\:1,
        unix:/run/socks.sock, systemd:domain=INET:index=0.
        [default: tcp:1080:interface=127.0.0.1]
        """
        self["ports"].append(description)

    opt_p = opt_port

    def opt_gssapi_allow(self, name: str) -> None:
        """
        With --gssapi-keytab: let in this Kerberos principal (user@REALM), or
        every principal of a realm (@REALM); repeatable.  [default: every
        principal the KDC authenticates]
        """
        if not name or name == "@":
            raise usage.UsageError("--gssapi-allow needs a principal or @REALM")
        self.setdefault("gssapi-allow", []).append(name)

    def opt_auth(self, description: str) -> None:
        """
        Specify an authentication method for the server.
        """
        problem = authProblem(description)
        if problem is not None:
            raise usage.UsageError(f"--auth {description}: {problem}")
        AuthOptionMixin.opt_auth(self, description)

    def inheritedSockets(self) -> InheritedSockets:
        """
        @return: The listening sockets systemd passed this process.
        """
        return InheritedSockets.fromEnvironment(execEnvironment(), os.getpid())

    def listeners(self) -> list[Listener]:
        """
        Check every C{--port} description and make its endpoint.

        @return: One listener per C{--port}, in order.

        @raise usage.UsageError: If a description cannot be used.
        """
        return [self._listener("port", description) for description in self["ports"]]

    def _listener(self, option: str, description: str) -> Listener:
        """
        Check one description and make its endpoint, with the default
        backlog where it names none.

        @param option: The option that gave it, for the message.

        @raise usage.UsageError: If the description cannot be used.
        """
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: N812

            reactor = IReactorSocket(globalReactor)
        try:
            return listenerFor(
                reactor, description, listenBacklog(), self.inheritedSockets()
            )
        except DescriptionError as e:
            raise usage.UsageError(f"--{option} {description!r}: {e}") from None

    def applyConfig(self, config: Config) -> None:
        """
        Take the options of the file's [server] table that the command line
        did not give, and load its users file.

        @raise usage.UsageError: A key is not an option, or its value does
            not fit the option.
        """
        flags = {flag[0] for flag in self.optFlags}
        parameters: dict[str, list[Any]] = {
            p[0]: p for p in cast(list[list[Any]], self.optParameters)
        }
        for key, value in config.server.items():

            def bad(problem: str, key: str = key) -> usage.UsageError:
                return usage.UsageError(
                    f"{config.path}: [server] key {key!r}: {problem}"
                )

            if key in self.given:
                continue
            if key in ("port", "auth", "gssapi-allow"):
                values = value if isinstance(value, list) else [value]
                if not all(isinstance(v, str) for v in values):
                    raise bad("must be a description or a list of them")
                option = {
                    "port": self.opt_port,
                    "auth": self.opt_auth,
                    "gssapi-allow": self.opt_gssapi_allow,
                }[key]
                for item in values:
                    option(str(item))
            elif key in flags:
                if not isinstance(value, bool):
                    raise bad("must be true or false")
                self[key] = value
            elif key in parameters:
                coerce = parameters[key][4] if len(parameters[key]) > 4 else None
                if isinstance(value, bool | list) or (
                    coerce is None and not isinstance(value, str)
                ):
                    raise bad(f"{value!r} is not a value of --{key}")
                try:
                    self[key] = coerce(value) if coerce is not None else value
                except (TypeError, ValueError):
                    raise bad(f"{value!r} is not a value of --{key}") from None
            else:
                raise bad("not an option of twistd socks")
        if config.usersFile is not None:
            try:
                self["users"] = UsersFile.load(config.usersFile)
            except UsersFileError as e:
                raise usage.UsageError(
                    f"{config.path}: [users] key 'file': {e}"
                ) from None

    def postOptions(self) -> None:
        if self["config"] is not None:
            self.applyConfig(self["config"])
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        for name in (
            "handshake-timeout",
            "connect-timeout",
            "bind-timeout",
            "udp-timeout",
        ):
            if not self[name] > 0:
                raise usage.UsageError(f"--{name} must be positive")
        if self["relay"] not in ("auto", "copy"):
            raise usage.UsageError("--relay must be 'auto' or 'copy'")
        if self["idle-timeout"] < 0:
            raise usage.UsageError("--idle-timeout must be 0 (off) or positive")
        self["externalAddresses"] = externalAddresses(self["external-address"])
        if self["upstream"] is not None:
            try:
                parseProxyURL(self["upstream"])
            except ValueError as e:
                raise usage.UsageError(f"--upstream: {e}") from None
        if self["max-sessions"] < 1:
            raise usage.UsageError("--max-sessions must be at least 1")
        if not self["drain-timeout"] >= 0:
            raise usage.UsageError(
                "--drain-timeout must be 0 (cut at once) or positive"
            )
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(f"--log-format must be {' or '.join(LOG_FORMATS)}")
        self["listeners"] = (
            self._listeners if self._listeners is not None else self.listeners()
        )
        if self["workers"] > 1:
            for listener in self["listeners"]:
                if not sharable(listener.description):
                    raise usage.UsageError(
                        f"--workers: {listener.description!r} cannot be shared "
                        "with workers (tcp, tcp6, unix and systemd can, also "
                        "inside haproxy:)"
                    )
        if self["metrics"] is not None:
            self["metricsListener"] = self._listener("metrics", self["metrics"])
        self["gssapiProtection"] = gssapiProtection(self["gssapi-protection"])
        authenticated = (
            bool(self.get("credCheckers"))
            or self["users"] is not None
            or self["gssapi-keytab"] is not None
        )
        if not authenticated and not self["allow-public-unauthenticated"]:
            for listener in self["listeners"]:
                if not listener.loopbackOnly:
                    raise usage.UsageError(
                        f"refusing to listen on {listener.description!r} without "
                        "--auth: it is not (certainly) a loopback address, so "
                        "anyone who can reach it could use this proxy. Configure "
                        "--auth, or pass --allow-public-unauthenticated if that "
                        "is intended."
                    )


def gssapiProtection(value: str) -> frozenset[ProtectionLevel]:
    """
    C{--gssapi-protection}: protection levels by name, comma-separated.

    @raise usage.UsageError: For a name that is not a level.
    """
    names = {
        "none": ProtectionLevel.NONE,
        "integrity": ProtectionLevel.INTEGRITY,
        "confidentiality": ProtectionLevel.CONFIDENTIALITY,
    }
    levels = set()
    for name in value.split(","):
        level = names.get(name.strip().lower())
        if level is None:
            raise usage.UsageError(
                "--gssapi-protection takes none, integrity and confidentiality, "
                f"comma-separated, not {name.strip()!r}"
            )
        levels.add(level)
    return frozenset(levels)


def externalAddresses(value: str | None) -> tuple[str, ...]:
    """
    C{--external-address}: IP addresses, comma-separated, at most one of
    each family.

    @raise usage.UsageError: For anything else.
    """
    if value is None:
        return ()
    addresses = []
    for text in value.split(","):
        try:
            addresses.append(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise usage.UsageError(
                "--external-address must be an IP address, or one IPv4 and "
                "one IPv6 address separated by a comma"
            ) from None
    if len({address.version for address in addresses}) != len(addresses):
        raise usage.UsageError("--external-address takes one address per family")
    return tuple(str(address) for address in addresses)
