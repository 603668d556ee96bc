"""
The C{--metrics} endpoint as a service: it listens where the operator said,
serves the server's metrics, and keeps answering while the server drains.
"""

from collections.abc import Callable
from typing import cast

from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger

from ._listen import Listener
from ._startup import ListeningService, StartupError
from .server._metrics import ServerMetrics, metricsSite

_log = Logger()


class MetricsService(ListeningService):
    """
    Serve the metrics on the C{--metrics} endpoint.  A drain leaves it
    running: it answers until the process exits.
    """

    def privilegedStartService(self) -> None:
        """
        Listen, naming C{--metrics} if that fails.

        @raise StartupError: If the endpoint fails at once.
        """
        try:
            ListeningService.privilegedStartService(self)
        except StartupError as e:
            raise StartupError(_metricsMessage(str(e))) from None

    def startService(self) -> None:
        """
        Listen, unless L{privilegedStartService} already did.

        @raise StartupError: If the endpoint fails at once.
        """
        try:
            ListeningService.startService(self)
        except StartupError as e:
            raise StartupError(_metricsMessage(str(e))) from None


def _metricsMessage(message: str) -> str:
    """
    @param message: A start-up failure message naming C{--port}.

    @return: The same, naming C{--metrics}.
    """
    prefix = "--port "
    return (
        "--metrics " + message[len(prefix) :] if message.startswith(prefix) else message
    )


def metricsService(
    listener: Listener,
    metrics: ServerMetrics,
    listening: Callable[[IListeningPort], None] = lambda port: None,
) -> MetricsService:
    """
    @param listener: The C{--metrics} endpoint.
    @param metrics: The server's metrics.
    @param listening: Told the port once it listens.

    @return: The service that serves them at C{GET /metrics}.
    """
    if not listener.loopbackOnly:
        _log.warn(
            "--metrics {description}: not (certainly) a loopback address, and "
            "the metrics endpoint has no authentication: anyone who can reach "
            "it can read the server's metrics",
            description=listener.description,
        )
    return MetricsService(
        listener.description,
        listener.endpoint,
        cast(IProtocolFactory, metricsSite(metrics)),
        listening,
    )
