"""The layout's rules, read from the code's own imports (AST), as the README's layout section states them.

- ``hostlink/wire`` (the floor) imports nothing of hostlink outside itself;
- ``hostlink/client`` never imports ``hostlink/daemon``, and the reverse; only ``install`` may use both;
- nothing imports the client's entry module (``hostlink.client.main``) but ``hostlink/__main__.py``;
- no private name crosses a module boundary; no import circle;
- the client file holds the client and the floor, never a daemon module.
"""

import ast
import os
import re
import zipfile

import pytest

from hostlink import zipapp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.join(ROOT, "hostlink")


def _modules():
    """{module name: path} of every module of the package."""
    out = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(folder, name)
    return out


MODULES = _modules()


def _is_package(module):
    return MODULES[module].endswith("__init__.py")


def _imports(module):
    """[(imported module, names taken from it, line)] of ``module``, lazy imports included."""
    tree = ast.parse(open(MODULES[module]).read())
    here = module if _is_package(module) else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("hostlink")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hostlink"):
                continue
            for alias in node.names:
                sub = "%s.%s" % (target, alias.name)
                if sub in MODULES:
                    out.append((sub, [], node.lineno))
                else:
                    out.append((target, [alias.name], node.lineno))
    return out


def _wing(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("client", "daemon", "wire", "install") else module


# What each part may import (besides itself): the floor nothing, each wing the floor.
ALLOWED = {
    "wire": {"wire"},
    "client": {"client", "wire", "hostlink"},
    "daemon": {"daemon", "wire", "hostlink"},
    "install": {"install", "client", "daemon", "wire", "hostlink", "hostlink.zipapp"},
    "hostlink.zipapp": {"wire"},
    "hostlink.__main__": {"client"},
    "hostlink": set(),
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_stay_in_their_wing(module):
    allowed = ALLOWED[_wing(module)]
    bad = ["%s (line %d)" % (target, line) for target, _, line in _imports(module)
           if _wing(target) not in allowed and target not in allowed]
    assert not bad, "%s may import only %s, not: %s" % (module, sorted(allowed), ", ".join(bad))


def test_nothing_imports_the_client_entry():
    users = [m for m in MODULES for target, _, _ in _imports(m)
             if target == "hostlink.client.main" and m != "hostlink.__main__"]
    assert not users, users


def test_no_private_name_crosses_modules():
    crossing = []
    for module in MODULES:
        tree = ast.parse(open(MODULES[module]).read())
        aliases = {}
        for target, names, line in _imports(module):
            crossing += ["%s:%d takes %s.%s" % (module, line, target, n) for n in names
                         if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(tree):  # module objects bound by import: their private attributes
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.value.id in aliases and node.value.id not in ("os", "sys", "posix")):
                name = aliases[node.value.id]
                if any(target.endswith(name) for target, _, _ in _imports(module)):
                    crossing.append("%s:%d uses %s.%s" % (module, node.lineno, node.value.id, node.attr))
    assert not crossing, "\n".join(crossing)


def test_no_import_circle():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # A package's __init__ is not an arrow back: importing hostlink.x.y loads hostlink.x first.
    graph = {m: {t for t in ts if not (m.startswith(t + ".") and _is_package(t))} for m, ts in graph.items()}
    state, circles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                circles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "\n".join(circles)


def test_client_file_holds_no_daemon_module(tmp_path):
    path = zipapp.build(str(tmp_path / "hostlink"))
    with open(path, "rb") as f:
        data = f.read()
    import io
    names = zipfile.ZipFile(io.BytesIO(data[data.index(b"PK\x03\x04"):])).namelist()
    sources = [n for n in names if n.endswith(".py") and n != "__main__.py"]
    assert "hostlink/client/main.py" in sources and "hostlink/wire/protocol.py" in sources
    assert all(re.match(r"hostlink/(client/|wire/|__init__\.py$)", n) for n in sources), sources


def test_readme_layout_names_every_module():
    """Each folder's row names exactly the modules in that folder (the same file name lives in
    several folders: hlnk.py, tls.py, jobs.py, errors.py, so a search of the whole section is not
    enough)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `hostlink/(\w+)/` \|[^|]*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"`(\w+\.py)`", m.group(2)))
    for folder in ("wire", "client", "daemon", "install"):
        actual = {n for n in os.listdir(os.path.join(PKG, folder))
                  if n.endswith(".py") and n not in ("__init__.py", "__main__.py")}
        assert rows.get(folder) == actual, "README row hostlink/%s/: missing %s, extra %s" % (
            folder, sorted(actual - rows.get(folder, set())), sorted(rows.get(folder, set()) - actual))
