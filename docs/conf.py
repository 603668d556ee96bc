"""
Sphinx configuration for socks-twisted's documentation.

Build it with (from the repository root, after ``pip install '.[docs]'``)::

    sphinx-build -W -b html docs /tmp/docs-out

The prose pages are the ``*.rst`` files beside this one.  The API reference is
made from the package's epytext docstrings by pydoctor, through its Sphinx
extension (as Twisted's own documentation is), into ``api/`` inside the output
directory, replacing the placeholder page ``api/index.rst``.

Links from the docstrings to Twisted's API resolve against an inventory of the
installed Twisted, which pydoctor makes here (no network is used; about 20
seconds the first time, then cached in the doctree directory), and point at
Twisted's published API documentation.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

project = "socks-twisted"
author = "socks-twisted contributors"
copyright = "socks-twisted contributors"

extensions = [
    "sphinx.ext.intersphinx",
    "pydoctor.sphinx_ext.build_apidocs",
]

# Only local inventories: the API reference's own (added by pydoctor's
# extension, see pydoctor_url_path) and nothing fetched from the network.
intersphinx_mapping: dict[str, Any] = {}

exclude_patterns = ["_build"]
html_theme = "alabaster"
# Labels the code blocks marked ":class: fragment" as such.
html_static_path = ["_static"]
html_css_files = ["fragment.css"]

#: Where Twisted's API documentation is published: the target of the links
#: from our docstrings to Twisted's names.
TWISTED_API = "https://docs.twisted.org/en/stable/api"

pydoctor_args = [
    "--project-name=socks-twisted",
    f"--project-base-dir={ROOT}",
    "--docformat=epytext",
    "--html-output={outdir}/api",
    str(ROOT / "socks_twisted"),
]
pydoctor_url_path = "api/"

#: pydoctor reports in files under these paths are logged but do not fail
#: the build.  None now: every module's docstrings are clean.  (Links to
#: Twisted's names are written qualified, L{Deferred<twisted.internet.defer.Deferred>},
#: and Python's names as C{os.environ}, for which no inventory is available
#: offline.)
TOLERATED: tuple[str, ...] = ()


def _twistedInventory(cacheDirectory: Path) -> Path:
    """
    An intersphinx inventory (C{objects.inv}) of the installed Twisted, made
    by pydoctor, cached by Twisted's version.
    """
    import twisted

    directory = cacheDirectory / f"twisted-inventory-{twisted.__version__}"
    inventory = directory / "objects.inv"
    if not inventory.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pydoctor",
                "--make-intersphinx",
                "--project-name=Twisted",
                f"--html-output={directory}",
                "--quiet",
                "--quiet",
                os.path.dirname(twisted.__file__),
            ],
            check=True,
            # Twisted's own docstring warnings are not ours to report.
            stdout=subprocess.DEVNULL,
        )
    return inventory


class _Tolerated(logging.Filter):
    """
    Turn pydoctor's reports about files under L{TOLERATED} into information,
    so that C{-W} does not fail on them; every other report stays a warning.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.WARNING and (
            any(path in message for path in TOLERATED)
            or any(
                message.strip().startswith(path.strip("/").replace("/", "."))
                for path in TOLERATED
            )
            # The summary line before the names of the objects whose
            # docstrings have syntax errors: each of those also has its own
            # "FILE:LINE: bad docstring" line, which is a warning unless
            # tolerated.
            or message.endswith("docstrings contain syntax errors:")
        ):
            record.levelno = logging.INFO
            record.levelname = "INFO"
            record.msg = f"pydoctor (tolerated): {message}"
            record.args = ()
            record.nonl = False  # Sphinx prints info lines without a newline
        return True


def _addTwistedInventory(app: Any) -> None:
    if app.builder is None or app.builder.name != "html":
        return
    inventory = _twistedInventory(Path(app.doctreedir))
    app.config.pydoctor_args = [
        *app.config.pydoctor_args,
        f"--intersphinx-file={inventory}::{TWISTED_API}",
    ]


def _restoreSphinxDirectives(app: Any) -> None:
    """
    Give back to Sphinx the directives that pydoctor registers with docutils,
    for every parser in the process, when it is imported: without this the
    pages' code blocks lose their language and their options.
    """
    from docutils.parsers.rst import directives
    from sphinx.directives.admonitions import SeeAlso
    from sphinx.directives.code import CodeBlock
    from sphinx.directives.patches import Code
    from sphinx.domains.changeset import VersionChange

    for name, directive in [
        ("code", Code),
        ("code-block", CodeBlock),
        ("sourcecode", CodeBlock),
        ("versionadded", VersionChange),
        ("versionchanged", VersionChange),
        ("deprecated", VersionChange),
        ("seealso", SeeAlso),
    ]:
        directives.register_directive(name, directive)
    directives._directives.pop("python", None)  # type: ignore[attr-defined]


def setup(app: Any) -> None:
    # Before pydoctor's extension runs pydoctor (at priority 490)...
    app.connect("builder-inited", _addTwistedInventory, priority=480)
    # ... and after it.
    app.connect("builder-inited", _restoreSphinxDirectives, priority=900)
    logging.getLogger("sphinx.pydoctor.sphinx_ext.build_apidocs").addFilter(
        _Tolerated()
    )
