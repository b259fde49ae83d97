"""The engine's import rules, read from the source with ``ast`` (nothing here is imported).

Layers, lowest first::

    engine      model, attention, sampling, runtime, quant, checkpoints, vae, text_encoders,
                prompt_rewrite, config, errors, variants, video_io, audio_io, v2a (the Foley model family)
    built on it apps (text-to-video, image-to-video recipes), finetune (the trainer),
                demo_models (the tiny random demo weights)
    on top      toy (the toy world and its trained model), the command lines (``__main__``),
                the public facade ``hyvideo_core/__init__.py`` (lazy string exports, no imports)
    outside     nodes/ (ComfyUI adapters): the only code that talks to ComfyUI

A lower layer never imports a higher one; both function-level ("lazy") and module-level imports
count. ``RULES`` below is the table the tests check; each rule says why it exists and how to fix a
break. ``test_no_import_cycles`` checks that the modules of ``hyvideo_core`` form no circle, again
counting lazy imports: a lazy import hides a circle from Python, not from the reader.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "hyvideo_core"

ENGINE = ("hyvideo_core.model", "hyvideo_core.attention", "hyvideo_core.sampling", "hyvideo_core.runtime",
          "hyvideo_core.quant", "hyvideo_core.checkpoints", "hyvideo_core.vae", "hyvideo_core.text_encoders",
          "hyvideo_core.prompt_rewrite", "hyvideo_core.config", "hyvideo_core.errors", "hyvideo_core.variants",
          "hyvideo_core.video_io", "hyvideo_core.audio_io", "hyvideo_core.v2a")
APPS = "hyvideo_core.apps"
RECIPES = ("hyvideo_core.apps.t2v", "hyvideo_core.apps.i2v", "hyvideo_core.apps.avatar")
FINETUNE = "hyvideo_core.finetune"
DEMO_MODELS = "hyvideo_core.demo_models"
TOY = "hyvideo_core.toy"
COMMAND_LINES = ("hyvideo_core.__main__", "hyvideo_core.finetune.__main__", "hyvideo_core.toy.__main__")
# ComfyUI's top-level modules (the root of ComfyUI 0.8.0; ``nodes`` is also this suite's adapters package).
COMFYUI = ("comfy", "comfy_extras", "comfy_execution", "comfy_api", "comfy_api_nodes", "comfy_config",
           "folder_paths", "server", "nodes", "execution", "latent_preview", "node_helpers", "app", "main",
           "api_server", "middleware", "protocol", "utils", "cuda_malloc", "comfyui_version")


@dataclass(frozen=True)
class Rule:
    name: str
    modules: Tuple[str, ...]              # the rule applies to these modules and everything under them
    must_not_import: Tuple[str, ...]      # ... which then never import these (or anything under them)
    why: str
    fix: str
    except_modules: Tuple[str, ...] = ()  # entry points the rule leaves out, each justified in ``why``


RULES = (
    Rule("the engine never imports what is built on it",
         modules=ENGINE, must_not_import=(APPS, FINETUNE, DEMO_MODELS, TOY) + COMMAND_LINES,
         why="the engine is the library everything else composes; an upward import makes every user of the "
             "engine load (and depend on) the apps, the trainer or the toy world, and invites import circles",
         fix="move the piece both sides need down into the engine (a dataclass into config.py, a helper into the "
             "engine module it belongs to), or move the importing code up into the app, tool or node that needs it"),
    Rule("recipes know nothing of training, the toy world, the demo models or the command lines",
         modules=(APPS,), must_not_import=(FINETUNE, DEMO_MODELS, TOY) + COMMAND_LINES,
         why="apps/ are the reusable text-to-video and image-to-video recipes; the toy world and the demo are "
             "built on them, not the other way round",
         fix="let the caller (the command line, the node, the toy package) pass in what the recipe needs"),
    Rule("one recipe never imports another",
         modules=RECIPES, must_not_import=RECIPES,
         why="text-to-video, image-to-video and avatar change independently; what they share (sampling raw latents, "
             "decoding them) is in apps/latent_stages.py",
         fix="move the shared piece into apps/latent_stages.py (or another named module under apps/) and import "
             "it from there in both recipes"),
    Rule("the demo models are written from the engine alone",
         modules=(DEMO_MODELS,), must_not_import=(APPS, FINETUNE, TOY) + COMMAND_LINES,
         why="demo_models writes tiny weights in the real file layouts; the recipes and the toy world use it",
         fix="keep recipe objects (VideoRequest, ...) out of demo_models: give plain settings and let the caller "
             "build the request"),
    Rule("the trainer knows no toy world, demo models or recipes",
         modules=(FINETUNE,), must_not_import=(TOY, DEMO_MODELS, APPS),
         except_modules=("hyvideo_core.finetune.__main__",),
         why="finetune trains any model on any clip source (an iterable of finetune.data.RawClip); the toy "
             "world is one such source and lives in hyvideo_core/toy/clip_source.py. The command line "
             "`python -m hyvideo_core.finetune` is an entry point, like the ComfyUI node: it may offer toy:N",
         fix="take what is needed as an argument (clips as an iterable of RawClip, weights as a path) and let "
             "the command line, node or script pass hyvideo_core.toy.clip_source.toy_clips(...) or the file"),
    Rule("nothing in hyvideo_core imports ComfyUI",
         modules=(PACKAGE,), must_not_import=COMFYUI,
         why="the engine runs without ComfyUI (command lines, tests, other front ends); nodes/ adapts it to "
             "ComfyUI",
         fix="do the ComfyUI part (folder_paths, comfy.model_management, ...) in nodes/ and pass plain values "
             "(paths, devices, callbacks) into hyvideo_core"),
)

# Lazy imports that close a circle, each with the reason it is accepted. Empty: no circle is accepted.
ACCEPTED_CIRCLE_EDGES: Dict[Tuple[str, str], str] = {}


# ----------------------------------------------------------------------------------------------
# reading the imports


@dataclass(frozen=True)
class Import:
    importer: str       # dotted module name
    path: Path
    line: int
    target: str         # the module imported, absolute (a ``from m import name`` of a submodule -> m.name)
    lazy: bool          # inside a function: runs when called, not when the module is imported


def module_files() -> Dict[str, Path]:
    out = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_base(importer: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = importer.split(".") if _is_package(path) else importer.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        # climbs out of hyvideo_core (``from .. import nodes``): name what it reaches, which is outside the package
        return node.module or ""
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _walk(tree: ast.AST, in_function: bool = False) -> Iterator[Tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(tree):
        yield child, in_function
        yield from _walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.Lambda)))


def imports_of(importer: str, path: Path, modules: Dict[str, Path]) -> List[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node, lazy in _walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(importer, path, node.lineno, alias.name, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(importer, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                out.append(Import(importer, path, node.lineno, sub if sub in modules or not base else base, lazy))
    return list(dict.fromkeys(out))     # ``from m import a, b`` is one import of m


def all_imports() -> List[Import]:
    modules = module_files()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def _under(module: str, prefixes: Sequence[str]) -> Optional[str]:
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


def _where(imp: Import) -> str:
    path = imp.path.relative_to(REPO) if imp.path.is_relative_to(REPO) else imp.path
    return f"{path}:{imp.line}"


# ----------------------------------------------------------------------------------------------
# the rules


def broken(rule: Rule, imports: Sequence[Import]) -> List[Import]:
    # a recipe package (apps/avatar/) importing its own modules is not one recipe importing another
    return [imp for imp in imports if _under(imp.importer, rule.modules) and not _under(imp.importer, rule.except_modules)
            and _under(imp.target, rule.must_not_import)
            and _under(imp.target, rule.must_not_import) != _under(imp.importer, rule.must_not_import)]


def explain(rule: Rule, imports: Sequence[Import]) -> str:
    return (f"import rule broken: {rule.name}\n"
            + "".join(f"  {_where(imp)}: {imp.importer} imports {imp.target} "
                      f"({'inside a function' if imp.lazy else 'at module level'}; "
                      f"{_under(imp.target, rule.must_not_import)} is off limits here)\n" for imp in imports)
            + f"why the rule exists: {rule.why}\nwhat to do: {rule.fix}\n"
            + "(the layers and every rule: tests/core/test_layering.py)")


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_import_rule(rule: Rule):
    found = broken(rule, all_imports())
    assert not found, explain(rule, found)


def test_rules_name_real_modules():
    """A renamed or moved package must not silently empty a rule."""
    modules = module_files()
    for rule in RULES:
        for name in rule.modules + rule.must_not_import + rule.except_modules:
            if name.startswith(PACKAGE):
                assert _under(name, tuple(modules)) or any(m.startswith(name + ".") for m in modules), (
                    f"rule {rule.name!r} names {name}, which is no module of {PACKAGE} any more; update RULES")


# ----------------------------------------------------------------------------------------------
# circles


def import_graph(imports: Sequence[Import], modules: Dict[str, Path]) -> Dict[str, Dict[str, Import]]:
    """module -> {module it makes Python run -> the import statement}. Importing ``a.b.c`` also runs the
    ``__init__`` of ``a.b`` unless the importer lives inside ``a.b`` (then that package is already running)."""
    graph: Dict[str, Dict[str, Import]] = {m: {} for m in modules}
    for imp in imports:
        if not _under(imp.target, (PACKAGE,)) or imp.target not in modules:
            continue
        parts = imp.target.split(".")
        for n in range(2, len(parts) + 1):
            target = ".".join(parts[:n])
            inside = imp.importer == target or imp.importer.startswith(target + ".")
            if target != imp.importer and target in modules and (n == len(parts) or not inside):
                graph[imp.importer].setdefault(target, imp)
    return graph


def _tangles(graph: Dict[str, Dict[str, Import]]) -> List[List[str]]:
    """Groups of modules that all reach each other (Tarjan's strongly connected components), >1 module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    out: List[List[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in _edges(graph, module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                m = stack.pop()
                group.append(m)
                if m == module:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return out


def _edges(graph: Dict[str, Dict[str, Import]], module: str) -> List[str]:
    return sorted(t for t in graph[module] if (module, t) not in ACCEPTED_CIRCLE_EDGES)


def _circle_through(graph: Dict[str, Dict[str, Import]], group: Sequence[str]) -> List[Import]:
    """The shortest circle from the group's first module back to itself (breadth-first)."""
    start, members = group[0], set(group)
    came_from: Dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in _edges(graph, module):
                if target not in members or target in came_from:
                    continue
                came_from[target] = graph[module][target]
                if target == start:
                    path, m = [], start
                    while True:
                        path.append(came_from[m])
                        m = came_from[m].importer
                        if m == start:
                            return path[::-1]
                following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {start}")   # a strongly connected group always has one


def find_circles(graph: Dict[str, Dict[str, Import]]) -> List[List[Import]]:
    """One circle for each group of modules that import each other."""
    return [_circle_through(graph, group) for group in _tangles(graph)]


def test_no_import_cycles():
    modules = module_files()
    circles = find_circles(import_graph(all_imports(), modules))
    assert not circles, (
        f"{len(circles)} group(s) of hyvideo_core modules import each other in a circle:\n"
        + "".join("  circle:\n" + "".join(f"    {_where(imp)}: {imp.importer} imports {imp.target}"
                                          f"{' (inside a function)' if imp.lazy else ''}\n" for imp in circle)
                  for circle in circles)
        + "what to do: find what the lower of these modules needs from the higher one and move that piece down "
          "(into the lower module, or a new module both import). A lazy import inside a function only hides the "
          "circle; if one is truly needed, add the edge to ACCEPTED_CIRCLE_EDGES in tests/core/test_layering.py "
          "with the reason")


def test_checker_sees_what_it_must(tmp_path):
    """The scanner itself, on planted files: relative imports resolve (also out of the package), lazy
    imports count, a broken rule names file and line, a circle is found."""
    modules = module_files()
    fake = tmp_path / "fake.py"
    fake.write_text("from ..errors import InputError\nfrom . import data\nimport folder_paths\n\n"
                    "def f():\n    from ..toy.world import ToyWorld\n")
    found = imports_of("hyvideo_core.finetune.fake", fake, modules)
    assert {(i.target, i.line, i.lazy) for i in found} == {
        ("hyvideo_core.errors", 1, False), ("hyvideo_core.finetune.data", 2, False), ("folder_paths", 3, False),
        ("hyvideo_core.toy.world", 6, True)}
    init = tmp_path / "__init__.py"
    init.write_text("from .dequant import dequantize\nfrom ... import errors\nfrom .... import nodes\n")
    assert [i.target for i in imports_of("hyvideo_core.quant.gguf", init, modules)] == [
        "hyvideo_core.quant.gguf.dequant", "hyvideo_core.errors", "nodes"]
    trainer_rule = next(r for r in RULES if r.modules == (FINETUNE,))
    assert [i.line for i in broken(trainer_rule, found)] == [6]
    message = explain(trainer_rule, broken(trainer_rule, found))
    assert f"{fake}:6: hyvideo_core.finetune.fake imports hyvideo_core.toy.world (inside a function" in message
    assert trainer_rule.fix in message

    a = Import("hyvideo_core.config", REPO / "a.py", 1, "hyvideo_core.errors", True)
    b = Import("hyvideo_core.errors", REPO / "b.py", 2, "hyvideo_core.config", False)
    c = Import("hyvideo_core.variants", REPO / "c.py", 3, "hyvideo_core.config", False)
    circles = find_circles(import_graph([a, b, c], modules))
    assert [[(i.importer, i.target) for i in circle] for circle in circles] == [
        [("hyvideo_core.config", "hyvideo_core.errors"), ("hyvideo_core.errors", "hyvideo_core.config")]]
