"""
Tests for the test realm fixture of L{tests._kerberos}: a missing MIT
program skips on a developer machine and fails under CI; the realm it runs
is on loopback with canonicalisation off.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from . import _kerberos


class MissingProgramTests(SynchronousTestCase):
    """
    L{_kerberos._findPrograms} when a program is missing.
    """

    def setUp(self) -> None:
        self.patch(_kerberos, "_PROGRAMS", {"no-such-krb5-program": "krb5-nothing"})
        saved = os.environ.get("CI")
        self.addCleanup(
            lambda: (
                os.environ.pop("CI", None)
                if saved is None
                else os.environ.__setitem__("CI", saved)
            )
        )

    def test_skipped(self) -> None:
        os.environ.pop("CI", None)
        error = self.assertRaises(SkipTest, _kerberos._findPrograms)
        self.assertIn("apt-get install krb5-nothing", str(error))

    def test_failsUnderCI(self) -> None:
        os.environ["CI"] = "true"
        error = self.assertRaises(AssertionError, _kerberos._findPrograms)
        self.assertIn("missing under CI", str(error))


class RealmTests(SynchronousTestCase):
    """
    The realm L{_kerberos.requireKerberosRealm} starts.
    """

    def test_environment(self) -> None:
        """
        The realm's variables are set for the test and passed to children.
        """
        realm = _kerberos.requireKerberosRealm(self)
        for name in ("KRB5_CONFIG", "KRB5CCNAME", "KRB5_KTNAME", "KRB5_KDC_PROFILE"):
            self.assertEqual(os.environ[name], realm.env[name])
        child = realm.childEnvironment({"PATH": "/usr/bin"})
        self.assertEqual(child["PATH"], "/usr/bin")
        self.assertEqual(child["KRB5_CONFIG"], realm.env["KRB5_CONFIG"])
        self.assertEqual(realm.keytab, realm.env["KRB5_KTNAME"])

    def test_configuration(self) -> None:
        """
        The KDC is on 127.0.0.1 and names are not canonicalised.
        """
        realm = _kerberos.requireKerberosRealm(self)
        with open(realm.env["KRB5_CONFIG"], encoding="utf-8") as f:
            krb5 = f.read()
        with open(realm.env["KRB5_KDC_PROFILE"], encoding="utf-8") as f:
            kdc = f.read()
        self.assertIn(f"kdc = 127.0.0.1:{realm.kdcPort}", krb5)
        self.assertIn("dns_canonicalize_hostname = false", krb5)
        self.assertIn("rdns = false", krb5)
        self.assertIn(f"kdc_listen = 127.0.0.1:{realm.kdcPort}", kdc)
        self.assertIn(f"kdc_tcp_listen = 127.0.0.1:{realm.kdcPort}", kdc)
        self.assertEqual(
            realm.servicePrincipals,
            ("rcmd/localhost@KRBTEST.COM", "rcmd/127.0.0.1@KRBTEST.COM"),
        )
