"""
C{twistd socks}: the service its command-line options (L{Options}, from
L{socks_twisted._options}) describe.
"""

from collections.abc import Callable
from resource import getrlimit, setrlimit
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorFromThreads,
)
from twisted.logger import Logger

from ._descriptors import MARGIN, PER_SESSION, budgetSessions
from ._drain import ServerService
from ._jsonlog import installJSONLogging
from ._listen import Listener
from ._metricsservice import metricsService
from ._options import (
    DEFAULT_PORT,
    Options,
    canCheckSystemPasswords,
)
from ._reload import Reloader, withConfig
from ._sighup import SIGHUPService, logIgnored
from ._startup import ListeningService, StartupError
from ._textlog import installTextLogging
from ._wire import ProtectionLevel
from ._workers import supervisedService
from .auth import GSSAPIPrincipalChecker, portalFor
from .config import Config
from .server import GSSAPISettings, ServerSettings, SOCKSServerFactory
from .server._settings import ALL_PROTECTION_LEVELS
from .users import HashedPasswordChecker, UsersFile, startThreadPool

_log = Logger()

__all__ = [
    "DEFAULT_PORT",
    "Options",
    "canCheckSystemPasswords",
    "gssapiSettings",
    "keytabCredentials",
    "makeService",
    "sessionCap",
]


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
