"""The import direction, from the source text (every import, also those inside functions):

    xclip_core <- schemas <- xclip_store <- jobs / xclip_search / moderation <- CLI

and no import circle between modules (the writer <-> indexes and decoder <-> gpu_decode circles
are gone). The CLI layer is ``xclip_cli`` and the ``cli``/entry-script modules of the packages."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("xclip_core", "schemas", "xclip_store", "jobs", "xclip_search", "moderation", "xclip_cli")
LAYER = {"xclip_core": 0, "schemas": 1, "xclip_store": 2, "jobs": 3, "xclip_search": 3, "moderation": 3,
         "xclip_cli": 4}
CLI_MODULES = {"jobs.demo", "jobs.bench"}
NAMES = {0: "xclip_core", 1: "schemas", 2: "xclip_store", 3: "jobs/xclip_search/moderation", 4: "CLI"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else []:
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Project modules imported by module ``name`` (the longest known prefix of each import)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import submodule` depends on the submodule (and on pkg/__init__ only for names
            # that are not submodules)
            targets = subs + ([base] if any(t not in modules for t in subs) else [])
        for t in targets:
            parts = t.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in modules:
                    if cand != name:
                        found.add(cand)
                    break
    return found


def _layer(module: str) -> int:
    return 4 if module in CLI_MODULES else LAYER[module.split(".")[0]]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_import_direction():
    wrong = sorted(f"{m} ({NAMES[_layer(m)]}) imports {d} ({NAMES[_layer(d)]})"
                   for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m))
    assert not wrong, "imports against the direction xclip_core <- schemas <- xclip_store <- " \
                      "jobs/xclip_search/moderation <- CLI:\n" + "\n".join(wrong)


def test_no_import_circles():
    graph = _graph()
    # Tarjan's strongly connected components: a component of more than one module is a circle
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_core_and_store_stay_light():
    """xclip_core imports neither ray nor lancedb; the store imports no ray (it runs in the driver)."""
    bad = []
    for name, path in _modules().items():
        top = name.split(".")[0]
        if top not in ("xclip_core", "xclip_store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for mod in mods:
                root = mod.split(".")[0]
                if root == "ray" or (top == "xclip_core" and root == "lancedb"):
                    bad.append(f"{name} imports {mod}")
    assert not bad, bad


def test_the_checker_sees_a_circle_and_a_wrong_direction(tmp_path, monkeypatch):
    """The checks can fail: a fake tree with store -> jobs and a <-> b."""
    for pkg, files in {"xclip_store": {"__init__.py": "", "w.py": "def f():\n    from jobs import a\n"},
                       "jobs": {"__init__.py": "", "a.py": "from jobs.b import x\n",
                                "b.py": "def g():\n    from . import a\n"}}.items():
        (tmp_path / pkg).mkdir()
        for fname, text in files.items():
            (tmp_path / pkg / fname).write_text(text)
    import sys

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = _graph()
    assert "jobs.a" in graph["xclip_store.w"] and "jobs.b" in graph["jobs.a"] and "jobs.a" in graph["jobs.b"]
    try:
        test_import_direction()
    except AssertionError as e:
        assert "xclip_store.w (xclip_store) imports jobs.a" in str(e)
    else:
        raise AssertionError("a store module importing jobs passed")
    try:
        test_no_import_circles()
    except AssertionError as e:
        assert "['jobs.a', 'jobs.b']" in str(e)
    else:
        raise AssertionError("a circle passed")
