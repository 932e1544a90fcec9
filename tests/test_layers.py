"""The arrows between packages (ARCHITECTURE.md): a plain-Python import linter.

Every `import` in artconv, at module level or inside a function, is read with `ast`. An
arrow that must never exist, an arrow from a lower layer (LAYERS) to a higher one, and an
import cycle (imports inside functions included: a loop closed lazily is still a loop) fail
the test with the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from artconv._moved import MOVED

ROOT = Path(__file__).resolve().parents[1] / "artconv"
ENGINES = ("artconv.style", "artconv.deepdream", "artconv.features")

# (who, what it must never import, why)
FORBIDDEN = [
    ("artconv.nets", ENGINES + ("artconv.batch", "artconv.cli", "artconv.progress",
                                "artconv.registry", "rich"),
     "the network core knows no engine and no screen"),
    ("artconv.style", ("artconv.cli", "artconv.batch", "artconv.progress", "rich",
                       "artconv.deepdream", "artconv.features"), "engines report by callback"),
    ("artconv.deepdream", ("artconv.cli", "artconv.batch", "artconv.progress", "rich",
                           "artconv.style.engine", "artconv.features"),
     "engines report by callback"),
    ("artconv.features", ("artconv.cli", "artconv.batch", "artconv.progress", "rich",
                          "artconv.style", "artconv.deepdream"), "engines report by callback"),
    ("artconv.losses", ENGINES + ("artconv.fast", "artconv.batch", "artconv.cli",
                                  "artconv.progress", "artconv.video", "artconv.web", "rich"),
     "the loss terms sit below the engines (the optimiser and the trainer share them)"),
    ("artconv.fast", ENGINES + ("artconv.cli", "artconv.batch", "artconv.progress", "rich",
                                "artconv.video", "artconv.web"),
     "the fast engine and its trainer share the loss terms, not an engine; they report by "
     "callback"),
    ("artconv.deepdream.objectives", ("artconv.deepdream.engine",),
     "objectives are small functions below the loop"),
    ("artconv.batch", ("artconv.cli",), "the CLI sits on batch, not the other way"),
    ("artconv.io", ENGINES + ("artconv.batch", "artconv.cli", "artconv.progress"),
     "files in and out know no engine"),
    ("artconv.engine", ENGINES + ("artconv.nets", "artconv.batch", "artconv.cli", "torch"),
     "the contract is a foundation"),
    ("artconv.options", ("torch",) + ENGINES, "option records must load without torch"),
    ("artconv.video", ("artconv.cli", "artconv.batch", "artconv.progress", "rich",
                       "artconv.web"), "the clip driver reports by callback, like an engine"),
    ("artconv.web", ("artconv.cli",), "the page sits beside the CLI, not on it"),
    *[(engine, ("artconv.video", "artconv.web"), "an engine knows no clip driver and no page")
      for engine in ENGINES],
]
# The layers of ARCHITECTURE.md, top first: a module may import its own layer (without a
# cycle) and the layers below it, never one above. The longest matching prefix decides.
LAYERS = [
    ("artconv", "artconv.__main__"),
    ("artconv.cli",),
    ("artconv.web",),
    ("artconv.batch",),
    ("artconv.video",),
    ("artconv.api",),
    ("artconv.registry", "artconv.presets", "artconv.progress"),
    ENGINES + ("artconv.fast",),
    ("artconv.losses",),
    ("artconv.nets", "artconv.io", "artconv.networks"),
    ("artconv.errors", "artconv.options", "artconv.engine", "artconv.outputs",
     "artconv.device", "artconv._moved", "artconv._version"),
]
# TEMPORARY (issue 21): arrows that close a loop or point up, being removed on other branches
# right now. Each entry is (importer, imported); delete it when its fix lands. Nothing may be
# added here: a new loop or upward arrow is fixed, not listed.
PENDING_LOOPS = {
}
# The option records and the registry feed `--help`: torch must not load with them.
TORCH_FREE = ["artconv.options", "artconv.registry", "artconv.engine", "artconv.errors",
              "artconv.outputs", "artconv.style.options", "artconv.deepdream.options",
              "artconv.features.options", "artconv.batch.options", "artconv.losses.weights",
              "artconv.losses.options",
              "artconv.fast.train_options", "artconv.fast.options"]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module_level_only: bool = False, root: Path = ROOT,
            names_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for each import; relative imports resolved; old paths mapped
    to where the module lives now. TYPE_CHECKING blocks never run, so they are skipped.
    `from pkg import x` gives pkg and pkg.x, or with `names_only` pkg.x alone (what it
    loads: the module pkg.x, else pkg)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level
                                                      + 1] + ([base] if base else []))
                names = [base] * (not names_only) + [f"{base}.{a.name}" for a in child.names]
            else:
                names = []
            if names and (top or not module_level_only):
                found.extend((MOVED.get(n, n), child.lineno) for n in names)
            if not (module_level_only and nested):
                visit(child, top and not nested)

    visit(tree, True)
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


SOURCES = sorted(ROOT.rglob("*.py"))


def violations(who: str, banned: tuple[str, ...], root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        if not _under(module_name(path, root), who):
            continue
        for name, line in imports(path, root=root):
            if any(_under(name, b) for b in banned):
                bad.append(f"{path.relative_to(root.parent)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("who, banned, why", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_no_forbidden_arrow(who, banned, why):
    bad = violations(who, banned)
    assert not bad, f"{who} must not import {banned} ({why}):\n" + "\n".join(bad)


def edges(root: Path = ROOT) -> dict[str, dict[str, str]]:
    """module -> {module it imports: "file:line"}, every import (function-level too), each
    resolved to the artconv module it loads. Importing one's own parent package is no edge
    (the parent has always loaded first), except the root: `from artconv import __version__`
    reads the package that imports everything."""
    paths = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    graph: dict[str, dict[str, str]] = {}
    for path in paths:
        me = module_name(path, root)
        out = graph.setdefault(me, {})
        for name, line in imports(path, root=root, names_only=True):
            while name and name not in known:  # "from pkg.mod import func" -> pkg.mod
                name = name.rpartition(".")[0]
            parent = me.startswith(name + ".") and name != "artconv"
            if name and name != me and not parent:
                out.setdefault(name, f"{path.relative_to(root.parent)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, str]], allowed: set[tuple[str, str]] = frozenset()
           ) -> list[str]:
    """Each import cycle once, as "a -> b -> a (file:line, ...)"; `allowed` edges are cut."""
    found: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if (node, nxt) in allowed:
                continue
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt):] + [nxt]
                where = ", ".join(graph[a][b] for a, b in zip(loop, loop[1:], strict=False))
                found.append(" -> ".join(loop) + f" ({where})")
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return found


def layer(name: str) -> int:
    """The index in LAYERS (0 at the top) of the longest prefix matching `name`."""
    best, index = -1, None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if _under(name, prefix) and len(prefix) > best:
                best, index = len(prefix), i
    assert index is not None, f"{name} is in no layer: add it to LAYERS (and ARCHITECTURE.md)"
    return index


def arrows_up(graph: dict[str, dict[str, str]], allowed: set[tuple[str, str]] = frozenset()
              ) -> list[str]:
    """Imports from a module to one in a higher layer."""
    bad = []
    for me, targets in sorted(graph.items()):
        for name, where in sorted(targets.items()):
            if layer(name) < layer(me) and (me, name) not in allowed:
                bad.append(f"{where} {me} imports {name}")
    return bad


def test_no_import_cycle():
    """No loop anywhere, imports inside functions included."""
    found = cycles(edges(), PENDING_LOOPS)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_arrow_from_a_lower_layer_to_a_higher_one():
    bad = arrows_up(edges(), PENDING_LOOPS)
    assert not bad, "imports pointing up a layer (ARCHITECTURE.md):\n" + "\n".join(bad)


def test_pending_loops_are_still_pending():
    """The temporary allow-list only shrinks: an entry whose arrow is gone must be deleted."""
    graph = edges()
    gone = [pair for pair in sorted(PENDING_LOOPS) if pair[1] not in graph.get(pair[0], {})]
    assert not gone, f"fixed, so delete from PENDING_LOOPS: {gone}"


def test_the_linter_sees_a_planted_loop_and_an_arrow_up(tmp_path):
    """The cycle and layer checks themselves work, on a tree written here: a loop closed by an
    import inside a function, and an io module reaching up to batch."""
    root = tmp_path / "artconv"
    for package in ("", "nets", "io", "batch"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    (root / "nets" / "a.py").write_text("from artconv.nets.b import g\n")
    (root / "nets" / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    (root / "io" / "up.py").write_text("import artconv.batch.work\n")
    (root / "io" / "version.py").write_text("x = 1\nfrom artconv import __version__\n")
    (root / "batch" / "work.py").write_text("from ..io import up\n")
    (root / "batch" / "ok.py").write_text("from artconv.nets import a\nfrom artconv import batch\n")
    graph = edges(root)
    assert sorted(cycles(graph)) == [
        "artconv.batch.work -> artconv.io.up -> artconv.batch.work "
        "(artconv/batch/work.py:1, artconv/io/up.py:1)",
        "artconv.nets.a -> artconv.nets.b -> artconv.nets.a "
        "(artconv/nets/a.py:1, artconv/nets/b.py:2)"]
    assert cycles(graph, {("artconv.nets.b", "artconv.nets.a"),
                          ("artconv.io.up", "artconv.batch.work")}) == []
    assert arrows_up(graph) == ["artconv/io/up.py:1 artconv.io.up imports artconv.batch.work",
                                "artconv/io/version.py:2 artconv.io.version imports artconv"]


def test_the_linter_sees_a_forbidden_arrow(tmp_path):
    """The linter itself works: imports planted in a copy of the tree are found, inside a
    function, relative, or by an old module path."""
    root = tmp_path / "artconv"
    (root / "style").mkdir(parents=True)
    (root / "style" / "planted.py").write_text(
        "def f():\n    from artconv.progress import Progress\n"
        "from ..batch import jobs\nimport artconv.batch_ray\n")
    bad = violations("artconv.style", ("artconv.progress", "artconv.batch"), root)
    assert bad == ["artconv/style/planted.py:2 imports artconv.progress",
                   "artconv/style/planted.py:2 imports artconv.progress.Progress",
                   "artconv/style/planted.py:3 imports artconv.batch",
                   "artconv/style/planted.py:3 imports artconv.batch.jobs",
                   "artconv/style/planted.py:4 imports artconv.batch.ray"]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_option_records_and_the_registry_load_without_torch(module):
    import subprocess
    import sys

    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr or f"{module} imports torch"


def test_every_module_imports_first_on_its_own():
    """Importing any module before the others works (a lazily forwarding package once sent
    `from artconv.style import losses` through the engine, which looped back)."""
    import subprocess
    import sys

    names = sorted(module_name(p) for p in SOURCES if p.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'artconv']:\n"
            "        del sys.modules[loaded]\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as exc:\n"
            "        print(name, type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr
