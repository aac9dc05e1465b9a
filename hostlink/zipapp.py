"""Build the client as one executable file: a zipapp of the package's own client modules.

The file starts with a two-line /bin/sh header that runs ``python3 -I -S`` on itself: -I keeps
the user's PYTHON* variables and site-packages out, -S skips ``site`` (several ms of start-up).
``HOSTLINK_PYTHON`` names another interpreter. ``python3 FILE`` works too (``__main__.py``).
Compiled bytecode for the building interpreter sits beside each source; another Python version
falls back to the source.
"""

import io
import os
import py_compile
import sys
import tempfile
import zipfile

CLIENT_MODULES = ("__init__", "cli", "client", "protocol", "errors", "targets", "doctor", "fanout",
                  "legacy", "shims", "transfer", "xfer", "commands")
# Imports the client straight from the archive: running the archive as a script would go through
# runpy, whose imports (importlib.util, contextlib, collections) cost more than the client itself.
BOOTSTRAP = ("import sys;sys.path.insert(0,sys.argv[1]);del sys.argv[0];"
             "from hostlink.cli import main;sys.exit(main())")
HEADER = ('#!/bin/sh\nexec "${HOSTLINK_PYTHON:-python3}" -I -S -c \'%s\' "$0" "$@"\n'
          % BOOTSTRAP).encode()
MAIN = b"import sys\nfrom hostlink.cli import main\nsys.exit(main())\n"


def build(dest):
    """Write the client zipapp to ``dest`` (mode 0755) and return its path."""
    here = os.path.dirname(os.path.abspath(__file__))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        _add(zf, "__main__.py", MAIN)
        for name in CLIENT_MODULES:
            with open(os.path.join(here, name + ".py"), "rb") as f:
                source = f.read()
            _add(zf, "hostlink/%s.py" % name, source)
            _add(zf, "hostlink/" + _pyc_name(name), _compile(source, "hostlink/%s.py" % name))
    tmp = dest + ".tmp"
    with open(tmp, "wb") as f:
        f.write(HEADER + buf.getvalue())
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest


def _pyc_name(name):
    # zipimport looks for NAME.pyc beside NAME.py (not __pycache__), checked by magic number.
    return name + ".pyc"


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
