"""
What the rules say of the datagrams of one UDP association, direct or
through an upstream: decided on the destination the client named, with the
request's client, user and version, and counted when denied.
"""

from dataclasses import replace

from .._addresses import formatHostPort
from ..policy import Decision
from ._command import CommandContext


class DatagramRules:
    """
    The rules in force when the association was asked for, applied to each
    destination its datagrams name.
    """

    def __init__(self, context: CommandContext) -> None:
        self._context = context
        self._policy = context.policy
        self._asked = context.policyRequest

    def permit(self, address: str, port: int, name: str | None) -> str | None:
        """
        A destination at C{address} (named C{name} by the client, if it
        sent a name): C{None} if allowed, else the denial to log.
        """
        destination = replace(self._asked, host=name or address, port=port)
        decision = self._policy.decide(destination, address)
        return self._denial(decision, name or address, port)

    def permitName(self, name: str, port: int) -> str | None:
        """
        A destination named C{name} that only an upstream resolves: decided
        on the name alone.
        """
        decision = self._policy.decideByName(replace(self._asked, host=name, port=port))
        return self._denial(decision, name, port)

    def _denial(self, decision: Decision, where: str, port: int) -> str | None:
        if decision.allowed:
            return None
        rule = decision.rule.describe() if decision.rule is not None else "the rules"
        self._context.metrics.denied(rule)
        return f"datagrams to {formatHostPort(where, port)} denied by {rule}"
