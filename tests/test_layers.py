"""The import directions of README's Layout, enforced: utils.core imports nothing of the project and is the only
part of utils that dataloader/ and model/ import; otherwise a package imports only those before it in
core, method, dataloader, model, training, report, workflow, then the entry points and benchmarks; no file under
benchmarks/ imports an entry point; and no two modules import each other, directly or through others."""
from __future__ import annotations

import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py"))}
UTILS = ("core", "method", "training", "report", "workflow")

# package -> the project packages its modules may import (itself included)
ALLOWED = {
    "utils.core": {"utils.core"},
    "utils.method": {"utils.core", "utils.method"},
    "dataloader": {"utils.core", "dataloader"},
    "model": {"utils.core", "dataloader", "model"},
    "utils.training": {"utils.core", "utils.method", "dataloader", "model", "utils.training"},
    "utils.report": {"utils.core", "utils.method", "dataloader", "model", "utils.training", "utils.report"},
    "utils.workflow": {"utils.core", "utils.method", "dataloader", "model", "utils.training", "utils.report",
                       "utils.workflow"},
}
LIBRARY = set().union(*ALLOWED.values())
ALLOWED["benchmarks"] = LIBRARY | {"benchmarks"}
ALLOWED["scripts"] = LIBRARY | {"scripts"}


def package(module: str) -> str | None:
    """The layer of a project module (``utils.training.run`` -> ``utils.training``), None outside the project."""
    parts = module.split(".")
    if parts[0] == "utils":
        return f"utils.{parts[1]}" if len(parts) > 1 and parts[1] in UTILS else "utils"
    if parts[0] in ("dataloader", "model", "benchmarks"):
        return parts[0]
    if parts[0] in SCRIPTS:
        return "scripts"
    return None


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def project_files() -> list[str]:
    files = glob.glob(os.path.join(ROOT, "*.py"))
    for folder in ("utils", "dataloader", "model", "benchmarks"):
        files += glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)
    return sorted(files)


def imports(path: str) -> set[str]:
    """Every project module ``path`` imports, at module level or inside a function (a lazy import is still a
    direction)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    here = module_name(path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here.split(".")[: -node.level] if not path.endswith("__init__.py") else \
                    here.split(".")[: len(here.split(".")) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            # "from utils.core import io" imports the module utils.core.io
            names = [root] + [f"{root}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if package(name) is not None:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in project_files()}
    edges = {}
    for name, path in files.items():
        # keep only names that are modules of the project (drop "from x import function")
        edges[name] = {m for m in imports(path) if m in files and m != name}
    return edges


def test_every_package_imports_only_the_layers_below_it():
    wrong = []
    for path in project_files():
        here = module_name(path)
        layer = package(here)
        assert layer != "utils" or here == "utils", f"{here}: a module directly in utils/ belongs in a layer"
        allowed = ALLOWED.get(layer, set())
        for name in imports(path):
            target = package(name)
            if target not in allowed and target != "utils":
                wrong.append(f"{here} ({layer}) imports {name} ({target})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def find_cycles(edges: dict[str, set[str]]) -> set[str]:
    """Every cycle of ``edges`` met by a depth-first walk, as ``a -> b -> a`` starting at its smallest name."""
    cycles: set[str] = set()
    done: set[str] = set()

    def visit(node, stack, on_stack):
        on_stack.add(node)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt in on_stack:
                cycle = stack[stack.index(nxt):]
                start = cycle.index(min(cycle))
                cycles.add(" -> ".join(cycle[start:] + cycle[:start] + [min(cycle)]))
            elif nxt not in done:
                visit(nxt, stack, on_stack)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    for node in sorted(edges):
        if node not in done:
            visit(node, [], set())
    return cycles


def test_no_import_cycle():
    cycles = find_cycles(graph())
    assert not cycles, "\n".join(sorted(cycles))


def test_the_checker_sees_a_wrong_direction_and_a_cycle(tmp_path, monkeypatch):
    """The two tests above can fail: a bottom-layer module importing the training layer, and two modules
    importing each other, are both reported."""
    assert package("utils.core.io") == "utils.core" and package("stage_1") == "scripts"
    assert "utils.training" not in ALLOWED["utils.core"] and "scripts" not in ALLOWED["benchmarks"]
    bad = tmp_path / "bad.py"
    bad.write_text("from utils.training.run import Run\nimport stage_1\n\ndef f():\n    from model import x\n")
    assert imports(str(bad)) >= {"utils.training.run", "stage_1", "model"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {"a -> b -> c -> a"}
    assert find_cycles({"a": {"b"}, "b": set()}) == set()
