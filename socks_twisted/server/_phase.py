"""
The phases of a server session.
"""

from enum import Enum


class Phase(Enum):
    """
    Where a session is: each phase but the last waits for one thing (the
    client's bytes, a credential check, a command's outcome), and is named
    so in the log when the session ends there.
    """

    HANDSHAKE = "handshake"
    AUTHENTICATING = "authentication"
    GSSAPI = "GSS-API authentication"  # RFC 1961, before the request
    CONNECTING = "connecting"  # dialling the target, or waiting for the BIND peer
    RELAYING = "relaying"
    ASSOCIATED = "association"  # UDP: the TCP connection only keeps it alive
    CLOSED = "closed"
