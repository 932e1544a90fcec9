"""The arrows between packages (ARCHITECTURE.md): a plain-Python import linter.

Every `import` in artconv, at module level or inside a function, is read with `ast`; an
arrow that must never exist fails the test with the file and line. Module-level imports
must also form no cycle."""

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
# The option records and the registry feed `--help`: torch must not load with them.
TORCH_FREE = ["artconv.options", "artconv.registry", "artconv.engine", "artconv.errors",
              "artconv.outputs", "artconv.style.options", "artconv.deepdream.options",
              "artconv.features.options", "artconv.batch.options", "artconv.losses.weights",
              "artconv.losses.options",
              "artconv.fast.train_options", "artconv.fast.options"]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module_level_only: bool = False, root: Path = ROOT
            ) -> list[tuple[str, int]]:
    """(imported module, line) for each import; relative imports resolved; old paths mapped
    to where the module lives now. TYPE_CHECKING blocks never run, so they are skipped."""
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
                names = [base] + [f"{base}.{a.name}" for a in child.names]
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


def test_module_level_imports_form_no_cycle():
    known = {module_name(p) for p in SOURCES}
    graph = {}
    for path in SOURCES:
        edges = set()
        for name, _ in imports(path, module_level_only=True):
            while name and name not in known:  # "from pkg.mod import func" -> pkg.mod
                name = name.rpartition(".")[0]
            me = module_name(path)
            if name and name != me and not me.startswith(name + "."):  # a package's own parent
                edges.add(name)
        graph[module_name(path)] = edges
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)


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
