"""
The one exception type the wire layer raises for bad input.
"""


class ProtocolError(Exception):
    """
    The peer sent bytes that break the protocol.

    @ivar reason: Why, in words fit for a log line (never contains secrets).
    @ivar reply: The bytes to send to the peer before closing, or C{None}
        when the protocol has no way to say it (for instance an unknown
        version byte).
    """

    def __init__(self, reason: str, reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply
