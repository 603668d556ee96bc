"""
The package's import graph has no cycle: each module can be read and
tested knowing only the modules below it.
"""

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import socks_twisted

PACKAGE = Path(socks_twisted.__file__).parent


def moduleName(path: Path) -> str:
    """
    The dotted name of a module file under the package.
    """
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def importsOf(path: Path, modules: set[str]) -> set[str]:
    """
    The package's modules that C{path} imports, at any level of the file
    (imports under C{TYPE_CHECKING} count: a cycle in types is a cycle).
    """
    name = moduleName(path)
    isPackage = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if isPackage else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            candidates = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for candidate in candidates:
            # "from . import x" names a module; "from .m import f" names m.
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def findCycle(graph: dict[str, set[str]]) -> list[str] | None:
    """
    One cycle of C{graph}, as the list of its modules, or C{None}.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


class ImportGraphTests(SynchronousTestCase):
    """
    The import graph of C{socks_twisted}.
    """

    def graph(self) -> dict[str, set[str]]:
        files = sorted(PACKAGE.rglob("*.py"))
        modules = {moduleName(f) for f in files}
        return {moduleName(f): importsOf(f, modules) for f in files}

    def test_noCycle(self) -> None:
        """
        No module imports, directly or through others, a module that imports
        it back; a package's C{__init__} counts as importing what it
        re-exports.
        """
        self.assertIsNone(findCycle(self.graph()))

    def test_findCycle(self) -> None:
        """
        The cycle finder finds a cycle, and reports none where there is none.
        """
        self.assertEqual(
            findCycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"]
        )
        self.assertIsNone(findCycle({"a": {"b"}, "b": {"c"}, "c": set()}))

    def test_graphSeesRelativeImports(self) -> None:
        """
        The graph records relative imports: the session imports the wire
        layer and the relay.
        """
        imports = self.graph()["socks_twisted.server._session"]
        self.assertIn("socks_twisted._wire", imports)
        self.assertIn("socks_twisted.relay", imports)
