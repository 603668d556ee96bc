"""
L{SOCKSProxy}: one object that knows how to reach a SOCKS proxy and makes
the CONNECT endpoints, the HTTP agent, the BIND clients and the UDP client
for it, from a URL, from the environment or from a proxy endpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypedDict

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import DatagramProtocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS

from .._addresses import normalizeHost
from .._wire import AddressType
from ._agent import socksAgent
from ._association import SOCKS5UDPAssociation
from ._bind import PendingBind, SOCKS4BindClient, SOCKS5BindClient
from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Methods,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    SOCKSReactor,
    checkVersionOptions,
)
from ._environment import (
    NoProxy,
    ProxyURL,
    noProxyFromEnvironment,
    parseProxyURL,
    proxyFromEnvironment,
)
from ._gssapi import GSSAPIOptions
from ._resolve import SOCKS4Resolve, SOCKS5Resolve, SOCKS5ResolvePTR
from ._udp import SOCKS5UDPClient


class _SOCKS5Options(TypedDict):
    """
    How every SOCKS5 client a L{SOCKSProxy} makes authenticates and waits.
    """

    methods: Methods | None
    credentials: tuple[str | bytes, str | bytes] | None
    handshakeTimeout: float | None
    gssapi: GSSAPIOptions | None


class SOCKSProxy:
    """
    A SOCKS proxy, and the clients that go through it.

    Make one from a URL (L{fromURL}), from the environment
    (L{fromEnvironment}) or, for a proxy reached over TLS, a UNIX socket or
    another proxy, from any client endpoint that leads to it.  Its options
    are checked when it is made; its clients are the existing
    L{SOCKS5ClientEndpoint}, L{SOCKS4ClientEndpoint}, L{socksAgent},
    L{SOCKS5BindClient}, L{SOCKS4BindClient} and L{SOCKS5UDPClient}, which
    keep their behaviour; L{resolve} and L{resolvePTR} ask the proxy to look
    names up (Tor's extensions).

    @ivar version: 5 or 4.
    @ivar resolveLocally: Whether names are resolved here (C{socks5},
        C{socks4}) or sent to the proxy (C{socks5h}, C{socks4a}).
    @ivar proxyEndpoint: Leads to the proxy.
    @ivar url: The L{ProxyURL} it was made from, or C{None}.
    """

    def __init__(
        self,
        reactor: SOCKSReactor,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        version: int = 5,
        resolveLocally: bool = False,
        methods: Methods | None = None,
        credentials: tuple[str | bytes, str | bytes] | None = None,
        userID: str | bytes = b"",
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        noProxy: str | None = None,
        gssapi: GSSAPIOptions | None = None,
    ) -> None:
        """
        @param reactor: Used by every client made.
        @param proxyEndpoint: Connects to the proxy.
        @param version: 5 for SOCKS5, 4 for SOCKS4 / SOCKS4a.
        @param resolveLocally: Resolve names here (plain SOCKS4 for version
            4) instead of sending them to the proxy.
        @param methods: SOCKS5 only; see L{SOCKS5ClientEndpoint}.
        @param credentials: SOCKS5 only: C{(username, password)}, RFC 1929.
        @param userID: SOCKS4 only: the USERID field.
        @param handshakeTimeout: See L{SOCKS5ClientEndpoint}.
        @param noProxy: C{NO_PROXY} rules for L{bypasses}; C{None} bypasses
            nothing.
        @param gssapi: SOCKS5 only: authenticate with the GSSAPI method
            (Kerberos); see L{SOCKS5ClientEndpoint}.  Used by every client
            it makes: endpoints, the agent, BIND, UDP and lookups.

        @raise ValueError: The version is neither 4 nor 5, an option does not
            belong to it, or the options cannot be sent.
        """
        checkVersionOptions(version, methods, credentials, userID)
        self._reactor = reactor
        self.proxyEndpoint = proxyEndpoint
        self.version = version
        self.resolveLocally = bool(resolveLocally)
        if gssapi is not None and version != 5:
            raise ValueError("gssapi is for SOCKS5")
        self._socks5 = _SOCKS5Options(
            methods=methods,
            credentials=credentials,
            handshakeTimeout=handshakeTimeout,
            gssapi=gssapi,
        )
        self._userID = userID
        self._handshakeTimeout = handshakeTimeout
        self._noProxy = NoProxy(noProxy)
        self.url: ProxyURL | None = None
        # Check every option now, with a throw-away endpoint.
        self.endpoint("192.0.2.1", 1)

    @classmethod
    def fromURL(
        cls,
        reactor: SOCKSReactor,
        url: str,
        *,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        connectTimeout: float = 30,
        noProxy: str | None = None,
        gssapi: GSSAPIOptions | None = None,
    ) -> SOCKSProxy:
        """
        The proxy a URL names, reached over TCP
        (L{HostnameEndpoint<twisted.internet.endpoints.HostnameEndpoint>}).

        C{socks5://} resolves names here and sends addresses, as curl does;
        C{socks5h://} sends names for the proxy to resolve; C{socks4://} and
        C{socks4a://} likewise for SOCKS4.  The port defaults to 1080.  The
        user and password are percent-decoded (text as UTF-8): RFC 1929
        credentials for SOCKS5, the user ID for SOCKS4 (which takes no
        password).  IPv6 literals go in brackets.

        @param connectTimeout: Seconds to connect to the proxy.
        @param gssapi: Authenticate with the GSSAPI method (a C{socks5://} or
            C{socks5h://} URL only); see L{SOCKS5ClientEndpoint}.  The URL's
            user and password, if any, are offered too, after GSSAPI.
        @raise ValueError: The URL is not a usable SOCKS proxy URL (see
            L{parseProxyURL}), its fields cannot be sent, or C{gssapi} is
            given for SOCKS4.
        """
        return cls._fromParsed(
            reactor,
            parseProxyURL(url),
            handshakeTimeout=handshakeTimeout,
            connectTimeout=connectTimeout,
            noProxy=noProxy,
            gssapi=gssapi,
        )

    @classmethod
    def _fromParsed(
        cls,
        reactor: SOCKSReactor,
        parsed: ProxyURL,
        *,
        handshakeTimeout: float | None,
        connectTimeout: float,
        noProxy: str | None,
        gssapi: GSSAPIOptions | None = None,
    ) -> SOCKSProxy:
        endpoint = HostnameEndpoint(
            reactor, parsed.host, parsed.port, timeout=connectTimeout
        )
        credentials: tuple[bytes, bytes] | None = None
        userID: bytes = b""
        if parsed.version == 5 and parsed.username is not None:
            credentials = (parsed.username, parsed.password or b"")
        elif parsed.version == 4 and parsed.username is not None:
            userID = parsed.username
        proxy = cls(
            reactor,
            endpoint,
            version=parsed.version,
            resolveLocally=parsed.resolveLocally,
            credentials=credentials,
            userID=userID,
            handshakeTimeout=handshakeTimeout,
            noProxy=noProxy,
            gssapi=gssapi,
        )
        proxy.url = parsed
        return proxy

    @classmethod
    def fromEnvironment(
        cls,
        reactor: SOCKSReactor,
        environ: Mapping[str, str] | None = None,
        *,
        scheme: str | None = "https",
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        connectTimeout: float = 30,
    ) -> SOCKSProxy | None:
        """
        The SOCKS proxy the environment names, with curl's precedence:
        C{<scheme>_proxy} (then C{<SCHEME>_PROXY}, except for C{http}) when
        it holds a SOCKS URL, then C{all_proxy}, then C{ALL_PROXY}.
        C{no_proxy} (else C{NO_PROXY}) becomes the rules of L{bypasses}.
        Each variable is looked up in lowercase, then uppercase (as curl
        does on POSIX); an empty value counts as unset.  A scheme variable
        that names an HTTP proxy is passed over: this is a SOCKS client.

        @param environ: Any mapping; C{os.environ} when C{None}.
        @param scheme: The scheme of what you will fetch (C{"https"},
            C{"http"}, ...), choosing the scheme variable; C{None} reads
            only C{ALL_PROXY}.
        @return: The proxy, or C{None} when no SOCKS proxy is named.
        @raise ValueError: The variable chosen holds a bad URL.
        """
        if environ is None:
            environ = os.environ
        parsed = proxyFromEnvironment(environ, scheme)
        if parsed is None:
            return None
        return cls._fromParsed(
            reactor,
            parsed,
            handshakeTimeout=handshakeTimeout,
            connectTimeout=connectTimeout,
            noProxy=noProxyFromEnvironment(environ),
        )

    def __repr__(self) -> str:
        if self.url is None:
            where = repr(self.proxyEndpoint)
        else:
            host = self.url.host
            host = f"[{host}]" if ":" in host else host
            where = f"{self.url.scheme}://{host}:{self.url.port}"
        return f"<SOCKSProxy {where}>"

    def bypasses(self, host: str, port: int | None = None) -> bool:
        """
        Whether C{host} (and C{port}) should be reached directly, by the
        C{NO_PROXY} rules given (curl's; see L{NoProxy}).  The clients this
        proxy makes never bypass it: ask this first if you honour
        C{NO_PROXY}.
        """
        return self._noProxy.bypasses(host, port)

    def endpoint(self, host: str | bytes, port: int) -> IStreamClientEndpoint:
        """
        An endpoint that reaches C{host}:C{port} through the proxy (a
        L{SOCKS5ClientEndpoint} or L{SOCKS4ClientEndpoint}).

        @raise ValueError: The host or port cannot be sent.
        """
        if self.version == 5:
            return SOCKS5ClientEndpoint(
                host,
                port,
                self.proxyEndpoint,
                resolveLocally=self.resolveLocally,
                reactor=self._reactor,
                **self._socks5,
            )
        return SOCKS4ClientEndpoint(
            host,
            port,
            self.proxyEndpoint,
            userID=self._userID,
            resolveLocally=self.resolveLocally,
            handshakeTimeout=self._handshakeTimeout,
            reactor=self._reactor,
        )

    def agent(
        self,
        *,
        pool: HTTPConnectionPool | None = None,
        contextFactory: IPolicyForHTTPS | None = None,
    ) -> Agent:
        """
        An L{Agent<twisted.web.client.Agent>} whose requests all go through
        the proxy (see L{socksAgent}); by default with a new persistent pool
        of its own.
        """
        return socksAgent(
            self._reactor,
            self.proxyEndpoint,
            pool=pool,
            version=self.version,
            userID=self._userID,
            resolveLocally=self.resolveLocally,
            contextFactory=contextFactory,
            **self._socks5,
        )

    def bind(
        self,
        factory: IProtocolFactory,
        host: str | bytes = "0.0.0.0",
        port: int = 0,
        *,
        acceptTimeout: float | None = None,
    ) -> Deferred[PendingBind]:
        """
        Ask the proxy to listen for one peer (BIND), as
        L{SOCKS5BindClient.bind} / L{SOCKS4BindClient.bind} do.

        @param factory: Builds the protocol for the peer.
        @param host: The peer expected (DST.ADDR); C{0.0.0.0} for any.
        @param port: The peer's port (DST.PORT); 0 for any.
        @param acceptTimeout: See L{SOCKS5BindClient}.
        @raise ValueError: The host or port cannot be sent.
        """
        client: SOCKS5BindClient | SOCKS4BindClient
        if self.version == 5:
            client = SOCKS5BindClient(
                host,
                port,
                self.proxyEndpoint,
                resolveLocally=self.resolveLocally,
                acceptTimeout=acceptTimeout,
                reactor=self._reactor,
                **self._socks5,
            )
        else:
            client = SOCKS4BindClient(
                host,
                port,
                self.proxyEndpoint,
                userID=self._userID,
                resolveLocally=self.resolveLocally,
                handshakeTimeout=self._handshakeTimeout,
                acceptTimeout=acceptTimeout,
                reactor=self._reactor,
            )
        return client.bind(factory)

    def resolve(self, name: str | bytes) -> Deferred[str]:
        """
        Ask the proxy for an address of C{name}, with Tor's RESOLVE command
        (torspec socks-extensions.txt): over SOCKS5 whatever the scheme's
        C{h} (the point is that the proxy resolves), over SOCKS4a for a
        C{socks4a://} proxy (IPv4 answers only).  Our server, Tor and a few
        others serve it; most proxies answer 0x07, command not supported.

        @param name: A host name; an IP literal is answered as itself.
        @return: A L{Deferred<twisted.internet.defer.Deferred>} that fires
            with the address (IPv4 or IPv6 text), or fails as L{endpoint}'s
            C{connect} does: L{socks_twisted.errors.HostUnreachableError}
            when the name does not resolve (SOCKS4:
            L{socks_twisted.errors.SOCKS4RejectedError}),
            L{socks_twisted.errors.ConnectionNotAllowedError} when the rules
            deny it, L{socks_twisted.errors.CommandNotSupportedError} when
            the proxy does not serve RESOLVE.
        @raise ValueError: The name cannot be sent, or the proxy is plain
            SOCKS4 (C{socks4://}), which cannot carry a name.
        """
        if self.version == 5:
            return SOCKS5Resolve(
                name,
                self.proxyEndpoint,
                reactor=self._reactor,
                **self._socks5,
            ).lookup()
        if self.resolveLocally:
            raise ValueError(
                "a plain SOCKS4 proxy (socks4://) cannot be sent a name; "
                "use socks4a:// or SOCKS5"
            )
        return SOCKS4Resolve(
            name,
            self.proxyEndpoint,
            userID=self._userID,
            handshakeTimeout=self._handshakeTimeout,
            reactor=self._reactor,
        ).lookup()

    def resolvePTR(self, address: str | bytes) -> Deferred[str]:
        """
        Ask the proxy for the name of C{address}, with Tor's RESOLVE_PTR
        command (SOCKS5 only).

        @param address: An IPv4 or IPv6 literal.
        @return: A L{Deferred<twisted.internet.defer.Deferred>} that fires
            with the name, or fails as L{resolve}'s does
            (L{socks_twisted.errors.HostUnreachableError} when the address
            has no name).
        @raise ValueError: C{address} is not an IP literal, or the proxy is
            SOCKS4.
        """
        if self.version != 5:
            raise ValueError("RESOLVE_PTR is SOCKS5 only; use a SOCKS5 proxy")
        addressType, _ = normalizeHost(address)
        if addressType is AddressType.DOMAIN:
            raise ValueError(f"{address!r} is not an IP address")
        return SOCKS5ResolvePTR(
            address,
            self.proxyEndpoint,
            reactor=self._reactor,
            **self._socks5,
        ).lookup()

    def udp(
        self,
        protocol: DatagramProtocol,
        *,
        interface: str | None = None,
        answersFromNames: bool = False,
    ) -> Deferred[SOCKS5UDPAssociation]:
        """
        Open a UDP association and connect C{protocol} to it, as
        L{SOCKS5UDPClient.associate} does.  Datagrams to names are sent for
        the proxy to resolve, whatever the scheme.  C{interface} and
        C{answersFromNames} (set it for C{DNSDatagramProtocol} and other
        protocols that check where answers come from) are those of
        L{SOCKS5UDPClient}.

        @raise ValueError: The proxy is SOCKS4, which has no UDP.
        """
        if self.version != 5:
            raise ValueError("SOCKS4 has no UDP; use a SOCKS5 proxy")
        return SOCKS5UDPClient(
            self.proxyEndpoint,
            interface=interface,
            reactor=self._reactor,
            answersFromNames=answersFromNames,
            **self._socks5,
        ).associate(protocol)
