"""The dependency rules of docs/architecture.md, read from the source: no import cycles, each layer
imports only the layers below it, and the command line's parser needs no torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("rims_rl", "envs", "agents")


def _modules(repo: Path) -> dict[str, Path]:
    found = {"train_agent": repo / "train_agent.py"}
    for package in PACKAGES:
        for path in (repo / package).rglob("*.py"):
            name = ".".join(path.relative_to(repo).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The first-party modules ``path`` imports anywhere in it (``from package import submodule`` names the
    submodule: the package is then already being imported)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & set(modules)
            out |= subs if subs else {node.module}
    return {name for name in out if name in modules}


@pytest.fixture(scope="module")
def graph(repo) -> dict[str, set[str]]:
    modules = _modules(repo)
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_itself_through_others(graph):
    cycles, state, stack = [], {}, []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(stack[stack.index(other):] + [other]))
            elif other not in state:
                visit(other)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, cycles


def _in(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _violations(graph, importers, forbidden, allowed=()):
    """``a imports b`` for every module ``a`` that ``importers(a)`` selects and each ``b`` in ``forbidden``."""
    return sorted(f"{a} imports {b}" for a, deps in graph.items() if importers(a) for b in deps
                  if _in(b, *forbidden) and not _in(b, *allowed))


def test_each_layer_imports_only_the_layers_below_it(graph):
    assert graph["rims_rl.errors"] == set()  # every layer raises UserError from it
    assert _violations(graph, lambda a: _in(a, "rims_rl"), ("envs", "agents", "train_agent")) == []
    assert _violations(graph, lambda a: _in(a, "envs"), ("agents", "rims_rl", "train_agent"),
                       allowed=("rims_rl.errors",)) == []
    assert graph["agents.checks"] <= {"rims_rl.errors"}
    algorithm = lambda a: _in(a, "agents") and not _in(a, "agents.experiments")  # noqa: E731
    assert _violations(graph, algorithm, ("agents.experiments", "train_agent")) == []
    engine = lambda a: _in(a, "agents.experiments") and not _in(a, "agents.experiments.commands")  # noqa: E731
    assert _violations(graph, engine, ("agents.experiments.commands", "train_agent")) == []
    commands = lambda a: _in(a, "agents.experiments.commands")  # noqa: E731
    assert _violations(graph, commands, ("agents.experiments.commands",),
                       allowed=("agents.experiments.commands.options",)) == []
    assert not [name for name, deps in graph.items() if "train_agent" in deps]


def test_building_the_parser_imports_neither_torch_nor_the_envs(repo):
    """--help and a usage error answer at once: the subcommands import their engine only when they run."""
    code = ("import sys, train_agent\ntrain_agent.build_parser()\n"
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'envs', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
