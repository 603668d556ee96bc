"""
The package as it is distributed: one version, the licence, dependencies
that are used, and an sdist that holds what the README's test command needs.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import socks_twisted

from .interop._support import runTwistd, testDirectory

#: The distribution's name on PyPI.
DISTRIBUTION = "socks-twisted"

#: Where the package's own modules are.
PACKAGE = Path(socks_twisted.__file__).parent

#: Directories the sdist must hold, whole (MANIFEST.in grafts them).
SDIST_DIRECTORIES = ("docs", "tests", "bench", ".ci")

#: Files the sdist must hold, by their path in it.
SDIST_FILES = (
    "README.rst",
    "CHANGELOG.rst",
    "LICENSE",
    "setup.cfg",
    "pyproject.toml",
    "twisted/plugins/socks_twisted_dropin.py",
    ".ci/run",
    "tests/test_package.py",
)

#: Requirements that socks_twisted needs without importing them, and why.
#: Anything else in install_requires that no module imports is dead weight.
USED_INDIRECTLY = {
    "service-identity": (
        "Twisted's TLS (optionsForClientTLS, behind socksAgent's https) "
        "checks the server's host name with it, and without it only warns"
    ),
}

#: What pip prints when it cannot reach the package index.
_OFFLINE_SIGNS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Network is unreachable|"
    r"No matching distribution found|Could not fetch URL|ConnectTimeout|"
    r"ProxyError|Max retries exceeded"
)


def sourceRoot() -> Path:
    """
    @return: The directory that holds C{setup.cfg} and this C{tests}
        package: the repository, or an unpacked sdist.

    @raise SkipTest: There is none (the tests were installed elsewhere).
    """
    root = Path(__file__).resolve().parent.parent
    if not (root / "setup.cfg").exists():
        raise SkipTest(f"no source tree (setup.cfg) at {root}")
    return root


def setupConfig() -> configparser.ConfigParser:
    """
    @return: C{setup.cfg}, read without interpolation.
    """
    config = configparser.ConfigParser(interpolation=None)
    config.read(sourceRoot() / "setup.cfg", encoding="utf-8")
    return config


def normalize(name: str) -> str:
    """
    @return: A distribution name as PEP 503 compares them.
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def requirementName(requirement: str) -> str:
    """
    @param requirement: One line of C{install_requires}, e.g.
        C{Twisted[tls]>=24.7.0}.

    @return: The distribution it names, normalized.
    """
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, f"not a requirement: {requirement!r}"
    return normalize(match.group(1))


def installRequires() -> list[str]:
    """
    @return: The distributions C{setup.cfg} names in C{install_requires},
        normalized.
    """
    lines = setupConfig()["options"]["install_requires"].splitlines()
    return [requirementName(line) for line in lines if line.strip()]


#: The extras of setup.cfg that are for developing socks-twisted, not
#: features of it: a module socks_twisted imports may not come from these.
DEVELOPMENT_EXTRAS = frozenset({"docs", "test", "dev"})


def featureExtrasRequire() -> list[str]:
    """
    @return: The distributions C{setup.cfg} names in its feature extras
        (those not in L{DEVELOPMENT_EXTRAS}, such as C{gssapi}), normalized:
        a module of the package that needs one imports it only when the
        feature is used.
    """
    extras = setupConfig()["options.extras_require"]
    return [
        requirementName(line)
        for extra in extras
        if extra not in DEVELOPMENT_EXTRAS
        for line in extras[extra].splitlines()
        if line.strip()
    ]


def importedTopLevels() -> set[str]:
    """
    @return: The top-level names of the modules that socks_twisted (and the
        dropin module of its plugins) import without a relative import, at
        any level of a file.
    """
    paths = list(PACKAGE.rglob("*.py"))
    dropin = sourceRoot() / "twisted" / "plugins" / "socks_twisted_dropin.py"
    if dropin.exists():
        paths.append(dropin)
    found: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.partition(".")[0])
    return found


class VersionTests(SynchronousTestCase):
    """
    The version is written once, in C{socks_twisted.__version__}.
    """

    def test_distributionVersion(self) -> None:
        """
        The installed distribution's version is C{socks_twisted.__version__}
        (C{setup.cfg} reads it from there).
        """
        try:
            installed = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            raise SkipTest(f"{DISTRIBUTION} is not installed") from None
        self.assertEqual(installed, socks_twisted.__version__)

    def test_setupReadsIt(self) -> None:
        """
        C{setup.cfg} takes the version from the package, not a copy.
        """
        self.assertEqual(
            setupConfig()["metadata"]["version"], "attr: socks_twisted.__version__"
        )

    def test_twistdVersion(self) -> None:
        """
        C{twistd socks --version} prints it, and exits 0.
        """
        result = runTwistd("socks", "--version", cwd=testDirectory(self))
        self.assertEqual(result.status, 0, result.output)
        self.assertIn(f"socks-twisted {socks_twisted.__version__}", result.output)

    def test_changelogStartsWithIt(self) -> None:
        """
        The first release C{CHANGELOG.rst} describes is this version.
        """
        text = (sourceRoot() / "CHANGELOG.rst").read_text(encoding="utf-8")
        headings = re.findall(r"^(\S.*)\n-{3,}$", text, re.MULTILINE)
        self.assertTrue(headings, "CHANGELOG.rst has no release heading")
        self.assertEqual(headings[0].split()[0], socks_twisted.__version__)


class LicenseTests(SynchronousTestCase):
    """
    The licence file and the metadata agree: MIT.
    """

    def test_licenseFile(self) -> None:
        """
        C{LICENSE} is the MIT licence of the socks-twisted authors.
        """
        text = (sourceRoot() / "LICENSE").read_text(encoding="utf-8")
        self.assertTrue(text.startswith("MIT License\n"), text[:80])
        self.assertIn("Copyright (c) 2026 the socks-twisted authors", text)
        self.assertIn("Permission is hereby granted, free of charge", text)

    def test_metadata(self) -> None:
        """
        C{setup.cfg} says MIT, in the licence field and in a classifier.
        """
        config = setupConfig()["metadata"]
        self.assertEqual(config["license"], "MIT")
        self.assertIn("License :: OSI Approved :: MIT License", config["classifiers"])


class DependencyTests(SynchronousTestCase):
    """
    C{install_requires} and the imports of socks_twisted agree.
    """

    def test_everyRequirementImported(self) -> None:
        """
        Every distribution in C{install_requires} provides a module that
        socks_twisted imports (or is in L{USED_INDIRECTLY}, with the reason).
        """
        providers = metadata.packages_distributions()
        imported = importedTopLevels()
        unused = []
        for name in installRequires():
            if name in USED_INDIRECTLY:
                continue
            modules = {
                module
                for module, distributions in providers.items()
                if name in map(normalize, distributions)
            } or {name.replace("-", "_")}
            if not modules & imported:
                unused.append(f"{name} (provides {', '.join(sorted(modules))})")
        self.assertEqual(unused, [], "in install_requires but never imported")

    def test_everyImportRequired(self) -> None:
        """
        Every module socks_twisted imports is in the standard library, is
        its own, or comes from a distribution in C{install_requires} or in a
        feature extra (C{gssapi}).
        """
        providers = metadata.packages_distributions()
        required = (
            set(installRequires())
            | set(featureExtrasRequire())
            | {normalize(DISTRIBUTION)}
        )
        undeclared = []
        for module in sorted(importedTopLevels()):
            if module in sys.stdlib_module_names or module == "socks_twisted":
                continue
            distributions = set(map(normalize, providers.get(module, [])))
            if not distributions & required:
                undeclared.append(f"{module} ({', '.join(sorted(distributions))})")
        self.assertEqual(undeclared, [], "imported but not in install_requires")

    def test_usedIndirectlyStillRequired(self) -> None:
        """
        L{USED_INDIRECTLY} names only requirements that are still there.
        """
        self.assertEqual(set(USED_INDIRECTLY) - set(installRequires()), set())


class ManifestTests(SynchronousTestCase):
    """
    C{MANIFEST.in} puts in the sdist everything the README's test command
    and a reader need.
    """

    def test_manifestLists(self) -> None:
        """
        C{MANIFEST.in} grafts the directories and includes the files.
        """
        lines = [
            line.split()
            for line in (sourceRoot() / "MANIFEST.in")
            .read_text(encoding="utf-8")
            .splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        grafted = {words[1] for words in lines if words[0] == "graft"}
        pruned = {words[1] for words in lines if words[0] == "prune"}
        included = {
            path for words in lines if words[0] == "include" for path in words[1:]
        }
        for directory in SDIST_DIRECTORIES:
            self.assertIn(directory, grafted)
            self.assertNotIn(directory, pruned)
        for path in SDIST_FILES:
            if path.partition("/")[0] not in SDIST_DIRECTORIES:
                self.assertIn(path, included)

    def test_noPluginsPackage(self) -> None:
        """
        C{twisted/plugins} holds no C{__init__.py}: it would replace
        Twisted's own C{twisted.plugins} package.
        """
        plugins = sourceRoot() / "twisted" / "plugins"
        self.assertTrue((plugins / "socks_twisted_dropin.py").exists())
        self.assertFalse((plugins / "__init__.py").exists())
        self.assertFalse((sourceRoot() / "twisted" / "__init__.py").exists())

    def test_sdistHolds(self) -> None:
        """
        C{python -m build --sdist} (when C{build} is installed) makes an sdist
        that holds the directories and files, and no plugin cache, no
        C{twisted/plugins/__init__.py} and no bytecode.
        """
        # The distribution, not the module: a build/ directory that building
        # a wheel left in the tree would pass for a namespace package.
        try:
            metadata.version("build")
        except metadata.PackageNotFoundError:
            message = "build is not installed (pip install '.[test]')"
            if os.environ.get("CI") == "true":
                self.fail(message)  # CI installs it: missing is a failure
            raise SkipTest(message) from None
        work = Path(testDirectory(self))
        # Build from a copy, so that building leaves nothing in the tree.
        copy = work / "source"
        shutil.copytree(
            sourceRoot(),
            copy,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                "venv",
                "build",
                "dist",
                "*.egg-info",
                "_trial_temp*",
                "__pycache__",
                ".mypy_cache",
                ".ruff_cache",
                ".hypothesis",
            ),
        )
        env = dict(os.environ)
        env.pop("COVERAGE_PROCESS_START", None)
        completed = subprocess.run(
            [sys.executable, "-m", "build", "--sdist", "--outdir", str(work / "dist")],
            cwd=copy,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
        output = completed.stdout.decode("utf-8", "replace")
        if completed.returncode != 0:
            if os.environ.get("CI") != "true" and _OFFLINE_SIGNS.search(output):
                raise SkipTest(f"pip cannot reach the package index:\n{output}")
            self.fail(f"python -m build --sdist failed:\n{output}")
        (sdist,) = (work / "dist").glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            top, _, _ = archive.getnames()[0].partition("/")
            names = {
                name.partition("/")[2] for name in archive.getnames() if "/" in name
            }
        self.assertTrue(top.endswith(f"-{socks_twisted.__version__}"), top)
        for directory in SDIST_DIRECTORIES:
            inRepository = {
                path.relative_to(sourceRoot()).as_posix()
                for path in (sourceRoot() / directory).rglob("*")
                if path.is_file()
                and "__pycache__" not in path.parts
                and not path.name.endswith(".pyc")
                and not any(part.startswith("_trial_temp") for part in path.parts)
            }
            self.assertEqual(inRepository - names, set(), f"{directory}/ in the sdist")
        for path in SDIST_FILES:
            self.assertIn(path, names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertNotIn("twisted/plugins/dropin.cache", names)
        self.assertEqual(
            [name for name in names if "__pycache__" in name or name.endswith(".pyc")],
            [],
        )


class TopLevelNamesTests(SynchronousTestCase):
    """
    The client's names are importable from the package itself, loaded only
    when asked for.
    """

    def test_clientNames(self) -> None:
        """
        Every name of C{socks_twisted.__all__} is the client's; any other
        is an C{AttributeError}.
        """
        import socks_twisted
        import socks_twisted.client

        for name in socks_twisted.__all__:
            self.assertIs(
                getattr(socks_twisted, name), getattr(socks_twisted.client, name)
            )
        with self.assertRaises(AttributeError):
            socks_twisted.noSuchName  # noqa: B018
