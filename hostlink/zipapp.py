"""Build the client as one executable file: a zipapp of ``hostlink/client/`` and the floor
(``hostlink/wire/``) it stands on, behind the /bin/sh header of wire/launcher.py.

What goes in is decided by the folders, not by a list: every module of those two packages, and
the package's own ``__init__``. No daemon module is ever in it (tests/unit/test_layout.py).
``python3 FILE`` works too (``__main__.py``). Compiled bytecode for the building interpreter sits
beside each source; another Python version falls back to the source.
"""

import io
import os
import py_compile
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
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        _add(zf, "__main__.py", MAIN)
        for name in modules():
            with open(os.path.join(root, name), "rb") as f:
                source = f.read()
            _add(zf, name, source)
            # zipimport looks for NAME.pyc beside NAME.py (not __pycache__), checked by magic number.
            _add(zf, name[:-3] + ".pyc", _compile(source, name))
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


def _compile(source, name):
    # optimize=2 drops docstrings: less to unmarshal at every start (zipimport ignores the level).
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "m.py")
        with open(src, "wb") as f:
            f.write(source)
        out = os.path.join(tmp, "m.pyc")
        py_compile.compile(src, out, dfile=name, doraise=True, optimize=2,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        with open(out, "rb") as f:
            return f.read()


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "dist/hostlink"))
