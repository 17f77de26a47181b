"""Imports go one way: the package's import graph (read with ``ast``, so imports inside functions count
too) has no cycles and never points from a lower layer to a higher one.

Layers, top to bottom (a module may import its own layer or any layer below it):

    orchestration   utils.run, utils.build, utils.sampling, report,  (compose a run, read many runs)
                    eval.icl, eval.zeroshot                           (evaluate saved runs)
    tasks / data    tasks, data, eval                                 (loss, metrics, datasets)
    models          models (blocks, backbones, heads, generation)
    mixers          models.mixers                                     (the sequence layers)
    shared SSM      models.ssm                                        (init, cache, FFT conv, one step)
    kernels         kernels                                           (Triton, the one dispatch point)
    ops             ops                                               (pure-PyTorch reference)
    helpers         utils (errors, callbacks, wandb, ...)             (import nothing of the project)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOTS = {"mambabench": ROOT / "src" / "mambabench", "mambabench.kernels": ROOT / "kernels"}

# top to bottom; a module belongs to the layer of its longest matching prefix
LAYERS: list[tuple[str, ...]] = [
    (
        "mambabench.utils.run",
        "mambabench.utils.build",
        "mambabench.utils.sampling",
        "mambabench.report",
        "mambabench.eval.icl",
        "mambabench.eval.zeroshot",
    ),
    ("mambabench.tasks", "mambabench.data", "mambabench.eval"),
    ("mambabench.models",),
    ("mambabench.models.mixers",),
    ("mambabench.models.ssm",),
    ("mambabench.kernels",),
    ("mambabench.ops",),
    ("mambabench.utils", "mambabench"),
]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (kernels ship as mambabench.kernels)."""
    modules = {}
    for package, root in PACKAGE_ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that ``import name`` loads (``from pkg import obj`` resolves to pkg)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports anywhere in its body (functions included)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import submodule` imports the submodule
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for target in targets:
                dep = resolve(target, modules)
                if dep is not None and dep != name:
                    deps.add(dep)
        graph[name] = deps
    return graph


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"module {module} is in no layer; add its package to LAYERS"
    return best


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None. A package importing its own submodules (to
    re-export them) is not counted; a submodule importing its package back is."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "mambabench.models.mixers.mamba" in graph
    assert "mambabench.models.ssm.initialization" in graph["mambabench.models.ssm"]
    # models/norms.py imports its Triton kernel lazily inside a function
    assert "mambabench.kernels.rms_norm" in graph["mambabench.models.norms"]


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})"
        for module, deps in import_graph().items()
        for dep in deps
        if layer_of(dep) < layer_of(module)
    ]
    assert not upward, "imports that point up the layers (see this file's docstring):\n" + "\n".join(upward)


@pytest.mark.parametrize(
    "shared",
    ["mambabench.models.ssm.initialization", "mambabench.models.ssm.cache", "mambabench.models.ssm.fft_conv"],
)
def test_shared_ssm_pieces_import_nothing_of_the_project(shared: str) -> None:
    assert import_graph()[shared] == set()


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"p": {"p.x"}, "p.x": set()}) is None
