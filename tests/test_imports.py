"""No import loops: no module of wdsr_fast imports, at any depth or inside a function, a module that imports it.

The graph is read from the source with ``ast`` (every ``import`` and ``from ... import`` anywhere in a file,
function bodies included, absolute and relative), plus the backend modules the ops registry imports by name.
A ``from package import name`` counts as an import of the submodule ``package.name`` where there is one, else of
the package. The implicit import of a parent package (Python runs ``wdsr_fast/__init__.py`` before any submodule)
is not an edge: every submodule would otherwise be in a loop with the package that lists it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wdsr_fast
from wdsr_fast import ops

PACKAGE_DIR = Path(wdsr_fast.__file__).resolve().parent


def module_files(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under ``package_dir``."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (source ``path``) imports anywhere in its text."""
    is_package = path.name == "__init__.py"
    found = set()

    def add(target: str) -> None:
        while target and target not in modules:  # a name inside a module: the module itself
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package holding this module, minus level - 1 steps up
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def import_graph(package_dir: Path, package: str, extensions: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Module -> the package's modules it imports; ``extensions``: compiled modules (no source, no imports)."""
    modules = module_files(package_dir, package)
    graph = {name: imported_modules(name, path, {**modules, **dict.fromkeys(extensions)})
             for name, path in modules.items()}
    return {**graph, **{name: set() for name in extensions}}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules [a, b, ..., a] each importing the next, or None when the graph has no cycle."""
    state = {}  # module -> "open" while on the current path, "done" once fully explored
    path = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def wdsr_fast_graph() -> dict[str, set[str]]:
    extensions = ("wdsr_fast._C", "wdsr_fast._cpu")  # built by setup.py
    graph = import_graph(PACKAGE_DIR, "wdsr_fast", extensions=extensions)
    graph["wdsr_fast.ops.common"] |= set(extensions)  # imported by name (load_extension)
    for entry in ops.REGISTRY.values():  # imported by name (importlib), when a backend is first asked for
        graph["wdsr_fast.ops"].add(f"wdsr_fast.ops{entry.module}")
    return graph


def test_wdsr_fast_has_no_import_cycle():
    graph = wdsr_fast_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_the_graph_sees_function_level_and_relative_imports():
    graph = wdsr_fast_graph()
    assert graph["wdsr_fast.model.key_layouts"] == set()  # pure data: nothing from the package
    assert {"wdsr_fast.model.key_layouts"} <= graph["wdsr_fast.model.network"]
    assert "wdsr_fast.model.checkpoint" not in graph["wdsr_fast.model.network"]
    assert "wdsr_fast.ops" in graph["wdsr_fast.inference.fast_wdsr"]  # `from . import ops`: the subpackage
    assert all(f"wdsr_fast.ops{e.module}" in graph["wdsr_fast.ops"] for e in ops.REGISTRY.values())


# The layers, bottom to top: a module imports only from its own layer or the layers below it.
LAYERS = {"wdsr_fast.weights": 0, "wdsr_fast.io": 0, "wdsr_fast.model": 1, "wdsr_fast.ops": 2,
          "wdsr_fast._C": 2, "wdsr_fast._cpu": 2, "wdsr_fast.inference": 3, "wdsr_fast.train": 4,
          "wdsr_fast.deploy": 4, "wdsr_fast.bench": 5, "wdsr_fast.cli": 6, "wdsr_fast.__main__": 7, "wdsr_fast": 7}


def layer_of(module: str) -> int:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def test_every_import_points_down_the_layers():
    graph = wdsr_fast_graph()
    upward = [f"{a} ({layer_of(a)}) -> {b} ({layer_of(b)})" for a, targets in graph.items() for b in targets
              if layer_of(b) > layer_of(a)]
    assert not upward, "imports up the layers: " + "; ".join(sorted(upward))


def test_the_top_of_the_package_is_its_public_face_and_subpackages():
    top = {p.name for p in PACKAGE_DIR.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert top == {"__init__.py", "__main__.py", "model", "ops", "io", "inference", "train", "deploy", "bench", "cli",
                   "weights"}


PUBLIC_API = {"WDSR", "WDSRConfig", "FastWDSR", "PRESETS", "preset", "count_parameters", "fold", "folded_copy",
              "FoldedWDSR", "load_model", "save_model", "export_onnx", "Upscaler", "upscale_video"}


def test_the_public_api_is_what_users_import():
    assert set(wdsr_fast.__all__) == PUBLIC_API == set(wdsr_fast._HOMES)  # each name's home module is known
    assert all(getattr(wdsr_fast, name) is not None for name in PUBLIC_API)
    assert isinstance(wdsr_fast.__version__, str)


def test_importing_the_package_installs_no_hook_in_the_process():
    """Importing (and running the CLI's --help) leaves torch's global hooks as they were; making a FastWDSR installs
    its parameter-registration counter."""
    code = ("import torch, torch.nn.modules.module as m; before = len(m._global_parameter_registration_hooks); "
            "import wdsr_fast, wdsr_fast.cli; after_import = len(m._global_parameter_registration_hooks); "
            "wdsr_fast.FastWDSR(n_resblocks=1); "
            "print(before, after_import, len(m._global_parameter_registration_hooks))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0", "1"]


def test_layer_check_can_fail():
    assert layer_of("wdsr_fast.model.fold") < layer_of("wdsr_fast.inference.fast_wdsr")
    assert layer_of("wdsr_fast.io.images") < layer_of("wdsr_fast.model.checkpoint")


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    """The checker must be able to fail: pkg.a imports pkg.sub.b inside a function, pkg.sub.b imports pkg.a."""
    files = {
        "__init__.py": "from .a import f\n",
        "a.py": "def f():\n    from .sub import b\n    return b.g\n",
        "sub/__init__.py": "",
        "sub/b.py": "import os\n\nfrom ..a import f as g\n",
    }
    graph = import_graph(write_package(tmp_path / "pkg", files), "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    files["sub/b.py"] = "import os\n\nfrom pkg.sub import x\n"  # its own package, not pkg.a: no loop
    graph = import_graph(write_package(tmp_path / "pkg", files), "pkg")
    assert find_cycle(graph) is None


def test_a_longer_cycle_of_absolute_imports_is_found(tmp_path):
    files = {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "from pkg.c import thing\n",
             "c.py": "from pkg import a\n"}
    graph = import_graph(write_package(tmp_path / "pkg", files), "pkg")
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
