"""Build the client as one executable file: a zipapp of ``hostlink/client/`` and the floor
(``hostlink/wire/``) it stands on, behind the /bin/sh header of wire/launcher.py.

What goes in is decided by the folders, not by a list: every module of those two packages, and
the package's own ``__init__``. No daemon module is ever in it (tests/unit/test_layout.py).
``python3 FILE`` works too (``__main__.py``). Compiled bytecode for the building interpreter sits
beside each source; another Python version falls back to the source.
"""

import io
import os
import sys
import tempfile
import zipfile

from .wire.launcher import ENTRY, HEADER

PACKAGES = ("client", "wire")
MAIN = ("import sys\nfrom %s import main\nsys.exit(main())\n" % ENTRY).encode()


def modules():
    """The archive names of the client's modules, e.g. ``hostlink/client/main.py``."""
    here = os.path.dirname(os.path.abspath(__file__))
    names = ["hostlink/__init__.py"]
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(here, package))):
            if name.endswith(".py"):
                names.append("hostlink/%s/%s" % (package, name))
    return names


def build(dest):
    """Write the client zipapp to ``dest`` (mode 0755) and return its path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    buf = io.BytesIO()
    compiled = _compile_all(root, modules())
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        _add(zf, "__main__.py", MAIN)
        for name in modules():
            with open(os.path.join(root, name), "rb") as f:
                _add(zf, name, f.read())
            # zipimport looks for NAME.pyc beside NAME.py (not __pycache__), checked by magic number.
            _add(zf, name[:-3] + ".pyc", compiled[name])
    tmp = dest + ".tmp"
    with open(tmp, "wb") as f:
        f.write(HEADER + buf.getvalue())
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest


def _add(zf, name, data):
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible builds
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


# Compiles each module to NAME.pyc in the directory argv[1]. optimize=2 drops docstrings: less to
# unmarshal at every start (zipimport ignores the level).
_COMPILER = """
import os, py_compile, sys
for name in sys.argv[3:]:
    py_compile.compile(os.path.join(sys.argv[2], name), os.path.join(sys.argv[1], name + "c"),
                       dfile=name, doraise=True, optimize=2,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def _compile_all(root, names):
    """{name: .pyc bytes}, the same at every build: compiled with a fixed hash seed, for the
    order of a set of strings in the bytecode follows their hashes."""
    import subprocess
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
        subprocess.run([sys.executable, "-c", _COMPILER, tmp, root] + list(names), check=True,
                       env=dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1"))
        out = {}
        for name in names:
            with open(os.path.join(tmp, name + "c"), "rb") as f:
                out[name] = f.read()
        return out


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "dist/hostlink"))
