"""
The transport an application protocol sees once a SOCKS tunnel is up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IProducer,
    IPushProducer,
    ITCPTransport,
    ITransport,
)
from zope.interface import alsoProvides, implementer

from .._addresses import TunnelAddress
from .._gssstream import DatagramWrapper


@implementer(ITransport, IConsumer, IPushProducer)
class SOCKSTunnelTransport:
    """
    The transport of an application protocol connected through a SOCKS
    proxy.

    Every call goes to the transport of the connection to the proxy, except
    L{getPeer}, which reports the target.
    L{ITCPTransport<twisted.internet.interfaces.ITCPTransport>} is provided
    only when the connection to the proxy provides it.  Nothing about TLS is
    passed on: when the link to the proxy is TLS, that is the proxy's
    certificate, not the target's, so this transport does not claim
    L{ISSLTransport<twisted.internet.interfaces.ISSLTransport>}.

    @ivar proxyBoundAddress: The BND.ADDR and BND.PORT of the proxy's reply:
        the address the proxy connects to the target from (often
        C{0.0.0.0:0} for SOCKS4 and for proxies that do not say).
    @ivar proxyAddress: The address of the proxy itself, as the connection to
        it reports it.
    @ivar proxyTransport: The transport of the connection to the proxy.
    @ivar datagramProtection: How the datagrams of a UDP association are
        wrapped, when the tunnel is under GSS-API integrity or
        confidentiality; C{None} otherwise.
    """

    def __init__(
        self,
        proxyTransport: ITransport,
        target: IAddress,
        proxyBoundAddress: TunnelAddress,
        deliverPending: Callable[[], None],
        datagramProtection: DatagramWrapper | None = None,
    ) -> None:
        """
        @param proxyTransport: The transport of the connection to the proxy.
        @param target: What L{getPeer} returns.
        @param proxyBoundAddress: The BND address of the proxy's reply.
        @param deliverPending: Called when the application resumes reading,
            to deliver bytes held back while it was paused.
        @param datagramProtection: See the instance variable.
        """
        self.proxyTransport = proxyTransport
        # Every transport method is called through here: the methods of
        # ITCPTransport, IConsumer and IPushProducer are not all on ITransport.
        self._proxy: Any = proxyTransport
        self.proxyBoundAddress = proxyBoundAddress
        self.datagramProtection = datagramProtection
        self.proxyAddress = proxyTransport.getPeer()
        self._target = target
        self._deliverPending = deliverPending
        self.paused = False
        self.closing = False
        if ITCPTransport.providedBy(proxyTransport):
            alsoProvides(self, ITCPTransport)

    def __repr__(self) -> str:
        return f"<SOCKSTunnelTransport to {self._target} via {self.proxyAddress}>"

    @property
    def disconnecting(self) -> bool:
        """
        Whether the connection is being closed.
        """
        return bool(getattr(self.proxyTransport, "disconnecting", self.closing))

    @property
    def connected(self) -> bool:
        """
        Whether the connection to the proxy is still open.
        """
        return bool(getattr(self.proxyTransport, "connected", not self.closing))

    # ITransport

    def write(self, data: bytes) -> None:
        """
        Send bytes to the target.
        """
        self._proxy.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """
        Send a sequence of byte strings to the target.
        """
        self._proxy.writeSequence(data)

    def loseConnection(self) -> None:
        """
        Close the tunnel once everything written is sent.
        """
        self.closing = True
        self._proxy.loseConnection()

    def abortConnection(self) -> None:
        """
        Close the tunnel at once, discarding unsent bytes.
        """
        self.closing = True
        self._proxy.abortConnection()

    def loseWriteConnection(self) -> None:
        """
        Half-close: send end-of-file to the target, keep reading.
        """
        self._proxy.loseWriteConnection()

    def getPeer(self) -> IAddress:
        """
        The target of the tunnel (not the proxy).
        """
        return self._target

    def getHost(self) -> IAddress:
        """
        The local address of the connection to the proxy.
        """
        host: IAddress = self._proxy.getHost()
        return host

    # ITCPTransport's socket options apply to the connection to the proxy.

    def getTcpNoDelay(self) -> bool:
        """
        See
        L{ITCPTransport.getTcpNoDelay<twisted.internet.interfaces.ITCPTransport.getTcpNoDelay>}.
        """
        return bool(self._proxy.getTcpNoDelay())

    def setTcpNoDelay(self, enabled: bool) -> None:
        """
        See
        L{ITCPTransport.setTcpNoDelay<twisted.internet.interfaces.ITCPTransport.setTcpNoDelay>}.
        """
        self._proxy.setTcpNoDelay(enabled)

    def getTcpKeepAlive(self) -> bool:
        """
        See
        L{ITCPTransport.getTcpKeepAlive<twisted.internet.interfaces.ITCPTransport.getTcpKeepAlive>}.
        """
        return bool(self._proxy.getTcpKeepAlive())

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """
        See
        L{ITCPTransport.setTcpKeepAlive<twisted.internet.interfaces.ITCPTransport.setTcpKeepAlive>}.
        """
        self._proxy.setTcpKeepAlive(enabled)

    # IConsumer

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        See
        L{IConsumer.registerProducer<twisted.internet.interfaces.IConsumer.registerProducer>}.
        """
        self._proxy.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """
        See
        L{IConsumer.unregisterProducer<twisted.internet.interfaces.IConsumer.unregisterProducer>}.
        """
        self._proxy.unregisterProducer()

    # IPushProducer

    def pauseProducing(self) -> None:
        """
        Stop reading from the target until L{resumeProducing}.
        """
        self.paused = True
        self._proxy.pauseProducing()

    def resumeProducing(self) -> None:
        """
        Read from the target again; bytes held back while paused come first.
        """
        self.paused = False
        self._deliverPending()
        if not self.paused:
            self._proxy.resumeProducing()

    def stopProducing(self) -> None:
        """
        See
        L{IPushProducer.stopProducing<twisted.internet.interfaces.IProducer.stopProducing>}.
        """
        self._proxy.stopProducing()
