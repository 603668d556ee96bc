"""
Reloading the configuration file: on C{SIGHUP}, the file and its users file
are read again and the new rules (with their C{via}), limits, bandwidth
caps, timeouts, C{upstream} and users take effect for new sessions at
once, while open sessions keep running.  A file that fails to load leaves
everything as it was.
"""

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from ._proxyurl import parseProxyURL
from .config import Config, ConfigError, loadConfig
from .server import ServerSettings, SOCKSServerFactory
from .server._limits import LimitSettings
from .users import HashedPasswordChecker, UsersFile, UsersFileError

_log = Logger()

#: The C{[server]} keys a reload applies, and the setting each one sets.
RELOADABLE: Mapping[str, str] = {
    "handshake-timeout": "handshakeTimeout",
    "connect-timeout": "connectTimeout",
    "idle-timeout": "idleTimeout",
    "bind-timeout": "bindTimeout",
    "udp-timeout": "udpTimeout",
}


def _seconds(path: str, key: str, value: object) -> float | None:
    """
    A timeout from the C{[server]} table: positive seconds (or 0, off, for
    C{idle-timeout}).

    @raise ConfigError: It is not.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value > 0:
            return float(value)
        if value == 0 and key == "idle-timeout":
            return None
    raise ConfigError(f"{path}: [server] key {key!r}: {value!r} is not a timeout")


def _upstream(path: str, value: object) -> str:
    """
    The C{[server]} table's C{upstream}: a proxy URL.

    @raise ConfigError: It is not one (the message never shows a password).
    """
    if isinstance(value, str):
        try:
            parseProxyURL(value)
        except ValueError as e:
            raise ConfigError(f"{path}: [server] key 'upstream': {e}") from None
        return value
    raise ConfigError(f"{path}: [server] key 'upstream': not a proxy URL")


def limitSettings(config: Config) -> LimitSettings:
    """
    The admission limits a configuration file sets.
    """
    limits = config.limits
    return LimitSettings(
        sessionsPerClient=limits.sessionsPerClient,
        sessionsPerUser=limits.sessionsPerUser,
        newSessionsPerSecondPerClient=limits.newSessionsPerSecondPerClient,
        authFailuresPerMinutePerClient=limits.authFailuresPerMinutePerClient,
    )


def withConfig(settings: ServerSettings, config: Config) -> ServerSettings:
    """
    C{settings} with the limits and bandwidth caps of C{config}.
    """
    return replace(
        settings,
        limits=limitSettings(config),
        bandwidthPerSession=config.limits.bandwidthPerSession,
        bandwidthPerUser=config.limits.bandwidthPerUser,
    )


class Reloader:
    """
    Reads the configuration again and applies it to a running server.

    @param config: The configuration the server started with.
    @param commandLine: The options given on the command line: they win
        over the file, at start and at every reload.
    @param checker: The users file's checker, if the server started with
        one.
    @param publicListener: Whether some listener is reachable from other
        hosts (see L{SOCKSServerFactory.setRules}).
    """

    def __init__(
        self,
        config: Config,
        factory: SOCKSServerFactory,
        *,
        commandLine: frozenset[str],
        checker: HashedPasswordChecker | None,
        publicListener: bool,
    ) -> None:
        self.config = config
        self._factory = factory
        self._commandLine = commandLine
        self._checker = checker
        self._publicListener = publicListener

    def reload(self) -> bool:
        """
        Read the file (and its users file) again and apply it; on any
        problem, log it and keep the running configuration.

        @return: Whether the new configuration was applied.
        """
        path = self.config.path
        try:
            config = loadConfig(path)
            users = UsersFile.load(config.usersFile) if config.usersFile else None
        except (ConfigError, UsersFileError) as e:
            _log.error(
                "reload of {path} failed, the running configuration is kept: {problem}",
                path=path,
                problem=str(e),
            )
            return False
        if users is not None:
            if self._checker is None:
                _log.warn(
                    "reload: [users] file {file} is ignored until restart "
                    "(the server started without a users file)",
                    file=config.usersFile,
                )
            else:
                self._checker.replace(users)
        elif self._checker is not None:
            _log.warn(
                "reload: removing [users] file is ignored until restart; "
                "the users of {file} stay",
                file=self.config.usersFile,
            )
        changes: dict[str, Any] = {}
        try:
            for key, value in config.server.items():
                if key in RELOADABLE and key not in self._commandLine:
                    changes[RELOADABLE[key]] = _seconds(path, key, value)
            if "upstream" not in self._commandLine:
                # A removed upstream goes direct, as it would at start.
                upstream = config.server.get("upstream")
                changes["upstream"] = (
                    None if upstream is None else _upstream(path, upstream)
                )
        except ConfigError as e:
            _log.error(
                "reload of {path} failed, the running configuration is kept: {problem}",
                path=path,
                problem=str(e),
            )
            return False
        settings = replace(withConfig(self._factory.settings, config), **changes)
        for key, value in config.server.items():
            if key in self._commandLine or key in RELOADABLE or key == "upstream":
                continue
            if self.config.server.get(key) != value:
                _log.warn(
                    "reload: [server] {key} changed, ignored until restart", key=key
                )
        for key in self.config.server.keys() - config.server.keys():
            if key not in self._commandLine and key != "upstream":
                _log.warn(
                    "reload: [server] {key} removed, ignored until restart", key=key
                )
        self._factory.setRules(
            config.rules, config.groups, publicListener=self._publicListener
        )
        self._factory.reconfigure(settings)
        self.config = config
        _log.info(
            "reloaded {path}: {rules} rules, {users} users",
            path=path,
            rules=len(config.rules),
            users=len(users.hashes) if users is not None else 0,
        )
        return True
