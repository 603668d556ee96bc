"""
C{twistd socks}: command-line options and the service they describe.
"""

import importlib
import ipaddress
import os
import sys
import warnings
from collections.abc import Callable
from resource import getrlimit, setrlimit
from typing import Any, cast

from twisted import copyright
from twisted.application.service import IService, Service
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import AuthOptionMixin
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorFromThreads,
    IReactorSocket,
)
from twisted.logger import Logger
from twisted.python import usage

from . import __version__
from ._descriptors import MARGIN, PER_SESSION, budgetSessions
from ._drain import ServerService
from ._jsonlog import installJSONLogging
from ._listen import (
    DescriptionError,
    InheritedSockets,
    Listener,
    execEnvironment,
    listenBacklog,
    listenerFor,
)
from ._metricsservice import metricsService
from ._proxyurl import parseProxyURL
from ._reload import Reloader, withConfig
from ._sighup import SIGHUPService, logIgnored
from ._startup import ListeningService, StartupError
from ._textlog import installTextLogging
from ._wire import ProtectionLevel
from ._workers import sharable, supervisedService, workerCount
from .auth import GSSAPIPrincipalChecker, portalFor
from .config import Config, ConfigError, loadConfig
from .server import GSSAPISettings, ServerSettings, SOCKSServerFactory
from .server._settings import ALL_PROTECTION_LEVELS
from .users import HashedPasswordChecker, UsersFile, UsersFileError, startThreadPool

_log = Logger()

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


def keytabCredentials(keytab: str) -> Any:
    """
    The acceptor credentials of C{--gssapi-keytab}, read now.

    @raise StartupError: If python-gssapi is missing or the keytab cannot be
        used.
    """
    try:
        from . import _gss
    except ImportError:
        raise StartupError(
            "--gssapi-keytab needs python-gssapi: install socks-twisted[gssapi]"
        ) from None
    try:
        return _gss.acceptorCredentials(keytab)
    except _gss.GSSAPIError as e:
        raise StartupError(f"--gssapi-keytab {keytab}: {e}") from None


def gssapiSettings(
    reactor: Any,
    keytab: str,
    service: str,
    allow: list[str],
    protection: frozenset[ProtectionLevel],
    checkers: list[Any],
) -> GSSAPISettings:
    """
    The GSSAPI method's settings: acceptor credentials from C{keytab}, read
    now, and a portal with a principal checker for C{allow} (names, and
    realms as C{@REALM}) besides C{checkers}.

    @raise StartupError: If python-gssapi is missing or the keytab cannot be
        used.
    """
    credentials = keytabCredentials(keytab)  # first: it reports a missing gssapi
    from . import _gss

    checker = GSSAPIPrincipalChecker(
        principals=[name for name in allow if not name.startswith("@")],
        realms=[name[1:] for name in allow if name.startswith("@")],
    )
    pool = startThreadPool(reactor)
    fromThreads = IReactorFromThreads(reactor)

    def newAcceptor() -> "_gss.Acceptor":
        return _gss.Acceptor(credentials, fromThreads, pool)

    return GSSAPISettings(
        newAcceptor=newAcceptor,
        portal=portalFor([*checkers, checker]),
        protection=protection,
        service=service,
    )


def sessionCap(requested: int) -> int:
    """
    Fit C{--max-sessions} into the open-file limit, raising the limit if
    need be, and say so when it does not fit.

    @param requested: The C{--max-sessions} value.

    @return: The sessions to allow.

    @raise StartupError: If not even one session fits.
    """
    budget = budgetSessions(requested, getrlimit=getrlimit, setrlimit=setrlimit)
    if budget.sessions < 1:
        raise StartupError(
            f"--max-sessions {requested}: the open-file limit (RLIMIT_NOFILE) "
            f"is {budget.soft}, too low for even one session ({PER_SESSION} "
            f"descriptors each, plus {MARGIN} for the server)"
        )
    if budget.lowered:
        _log.warn(
            "--max-sessions {requested} lowered to {sessions}: the open-file "
            "limit (RLIMIT_NOFILE) is {limit}, and each session needs "
            "{perSession} descriptors plus {margin} for the server",
            requested=requested,
            sessions=budget.sessions,
            limit=budget.soft,
            perSession=PER_SESSION,
            margin=MARGIN,
        )
    elif budget.raisedFrom is not None:
        _log.info(
            "raised the open-file limit (RLIMIT_NOFILE) from {old} to {new} "
            "for --max-sessions {requested}",
            old=budget.raisedFrom,
            new=budget.soft,
            requested=requested,
        )
    return budget.sessions


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


def makeService(options: dict[str, Any]) -> IService:
    """
    One listening service per C{--port}, all sharing one factory, one that
    keeps C{SIGHUP} from ending the server, and with C{--metrics} one that
    serves the metrics; their parent drains the server on C{SIGTERM}
    (L{ServerService}) and makes twistd log JSON lines (C{--log-format
    json}) or its own text lines, written faster (L{installTextLogging}).

    @param options: Parsed L{Options}.

    @return: The service to run.

    @raise StartupError: If the open-file limit leaves room for no session.
    """
    from twisted.internet import reactor

    if options.get("workers", 1) > 1:
        if options.get("gssapi-keytab") is not None:
            # Refuse a bad keytab here, once, not in every worker.
            keytabCredentials(options["gssapi-keytab"])
        return supervisedService(reactor, options, getattr(options, "argv", []))
    checkers = list(options.get("credCheckers") or [])
    users: UsersFile | None = options.get("users")
    checker = None
    if users is not None:
        checker = HashedPasswordChecker(
            users, IReactorFromThreads(reactor), startThreadPool(reactor)
        )
        checkers.append(checker)
    gssapi = None
    if options.get("gssapi-keytab") is not None:
        gssapi = gssapiSettings(
            reactor,
            options["gssapi-keytab"],
            options.get("gssapi-service", "rcmd"),
            list(options.get("gssapi-allow", [])),
            options.get("gssapiProtection", ALL_PROTECTION_LEVELS),
            checkers,
        )
    settings = ServerSettings(
        portal=portalFor(checkers) if checkers else None,
        gssapi=gssapi,
        allowSOCKS4WithAuth=options["allow-socks4-with-auth"],
        handshakeTimeout=options["handshake-timeout"],
        connectTimeout=options["connect-timeout"],
        idleTimeout=options["idle-timeout"] or None,
        maxSessions=sessionCap(options["max-sessions"]),
        bindTimeout=options["bind-timeout"],
        udpTimeout=options["udp-timeout"],
        externalAddresses=options.get("externalAddresses", ()),
        splice=options["relay"] == "auto",
        torResolve=not options["no-tor-resolve"],
        upstream=options.get("upstream"),
    )
    config: Config | None = options.get("config")
    if config is not None:
        settings = withConfig(settings, config)
    factory = SOCKSServerFactory(reactor, settings=settings)
    publicListener = any(not listener.loopbackOnly for listener in options["listeners"])
    onHangup: Callable[[], object] = logIgnored
    if config is not None:
        factory.setRules(config.rules, config.groups, publicListener=publicListener)
        onHangup = Reloader(
            config,
            factory,
            commandLine=frozenset(getattr(options, "given", ())),
            checker=checker,
            publicListener=publicListener,
        ).reload
    else:
        factory.setRules((), {}, publicListener=publicListener)

    def listening(port: IListeningPort) -> None:
        # The factory refuses CONNECT requests aimed at the server itself.
        factory.addListeningAddress(port.getHost())

    service = ServerService(
        IReactorCore(reactor),
        factory,
        options.get("drain-timeout", 10.0),
        freezeHeap=True,
    )
    children: list[Service] = [SIGHUPService(IReactorFromThreads(reactor), onHangup)]
    for listener in options["listeners"]:
        children.append(
            ListeningService(
                listener.description,
                listener.endpoint,
                factory.behindProxy() if listener.behindProxy else factory,
                listening,
            )
        )
    service.listeners.extend(children[1:])
    metricsListener: Listener | None = options.get("metricsListener")
    if metricsListener is not None:
        # Its address is the server's own too: no CONNECT may reach it.
        children.append(metricsService(metricsListener, factory.metrics, listening))
    twistdOptions = getattr(options, "parent", None)
    if options.get("log-format", "text") == "json":
        service.onParent.append(
            lambda parent: installJSONLogging(parent, twistdOptions)
        )
    else:
        # The same lines as twistd's own text observer, written faster.
        service.onParent.append(
            lambda parent: installTextLogging(parent, twistdOptions)
        )
    for child in children:
        # Service.setServiceParent is unannotated: called through the class,
        # mypy's untyped_calls_exclude for twisted applies.
        Service.setServiceParent(child, service)
    return service
