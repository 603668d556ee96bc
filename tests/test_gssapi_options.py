"""
The GSSAPI options of C{twistd socks}: on the command line and as keys of
the configuration file's [server] table.
"""

from __future__ import annotations

import os
import sys
from unittest import mock

from twisted.internet import reactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import socks_twisted
from socks_twisted._startup import StartupError
from socks_twisted._wire import ProtectionLevel
from socks_twisted.tap import Options, gssapiSettings


class GSSAPIOptionsTests(SynchronousTestCase):
    """
    C{--gssapi-keytab}, C{--gssapi-service}, C{--gssapi-allow} and
    C{--gssapi-protection}.
    """

    def test_commandLine(self) -> None:
        """
        The options parse; C{--gssapi-allow} repeats.
        """
        options = Options()
        options.parseOptions(
            [
                "--gssapi-keytab",
                "/etc/socks.keytab",
                "--gssapi-service",
                "socks",
                "--gssapi-allow",
                "alice@EXAMPLE.COM",
                "--gssapi-allow",
                "@OTHER.ORG",
                "--gssapi-protection",
                "integrity,confidentiality",
            ]
        )
        self.assertEqual(options["gssapi-keytab"], "/etc/socks.keytab")
        self.assertEqual(options["gssapi-service"], "socks")
        self.assertEqual(options["gssapi-allow"], ["alice@EXAMPLE.COM", "@OTHER.ORG"])
        self.assertEqual(
            options["gssapiProtection"],
            {ProtectionLevel.INTEGRITY, ProtectionLevel.CONFIDENTIALITY},
        )

    def test_defaults(self) -> None:
        """
        Without them GSSAPI is off; the service is rcmd; every level is
        granted.
        """
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options["gssapi-keytab"])
        self.assertEqual(options["gssapi-service"], "rcmd")
        self.assertEqual(len(options["gssapiProtection"]), 3)

    def test_configFile(self) -> None:
        """
        The same keys in the file's [server] table apply; gssapi-allow takes
        a list.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "[server]\n"
                'gssapi-keytab = "/etc/socks.keytab"\n'
                'gssapi-allow = ["@EXAMPLE.COM", "bob@OTHER.ORG"]\n'
                'gssapi-protection = "none"\n'
            )
        options = Options()
        options.parseOptions(["--config", os.path.abspath(path)])
        self.assertEqual(options["gssapi-keytab"], "/etc/socks.keytab")
        self.assertEqual(options["gssapi-allow"], ["@EXAMPLE.COM", "bob@OTHER.ORG"])
        self.assertEqual(options["gssapiProtection"], {ProtectionLevel.NONE})

    def test_badLevel(self) -> None:
        """
        An unknown level is a usage error.
        """
        self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--gssapi-protection", "total"],
        )

    def test_emptyAllow(self) -> None:
        """
        C{--gssapi-allow @} names nothing: a usage error.
        """
        self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--gssapi-allow", "@"]
        )

    def test_withoutGSSAPIPackage(self) -> None:
        """
        Without python-gssapi installed, C{--gssapi-keytab} ends start-up
        with one line saying what to install, not a traceback.
        """
        # None in sys.modules makes an import fail, as if not installed; the
        # package's attribute would otherwise answer "from . import _gss".
        missing = {"gssapi": None, "socks_twisted._gss": None}
        loaded = vars(socks_twisted).pop("_gss", None)
        if loaded is not None:
            self.addCleanup(setattr, socks_twisted, "_gss", loaded)
        with (
            mock.patch.dict(sys.modules, missing),
            self.assertRaises(StartupError) as raised,
        ):
            gssapiSettings(reactor, "/etc/krb5.keytab", "rcmd", [], frozenset(), [])
        self.assertEqual(
            str(raised.exception),
            "--gssapi-keytab needs python-gssapi: install socks-twisted[gssapi]",
        )
