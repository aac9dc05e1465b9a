"""Host programs under their own names: ``docker`` in the container is a link to the client that
runs ``docker`` on the host (exact argv, no shell), and ``HOSTLINK_PATH_MAP`` makes the working
directory mean the same place on both sides."""

import os

from . import CLIENT_NAMES
from .errors import UsageError


def client_path():
    """The client file itself (the zipapp), whatever name it was started under."""
    import sys
    return os.path.realpath(sys.argv[0])


def install(names, directory):
    """Make each name a link to the client in ``directory``; returns the paths made."""
    target = client_path()
    made = []
    for name in names:
        if "/" in name or name in CLIENT_NAMES or not name:
            raise UsageError("%r cannot be a shim name" % name)
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            if os.path.islink(path) and os.path.realpath(path) == target:
                continue
            raise UsageError("%s exists and is not a hostlink shim; remove it first" % path)
        os.symlink(os.path.relpath(target, directory), path)
        made.append(path)
    return made


def listing(directory):
    """The shim names in ``directory``."""
    target = client_path()
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if (os.path.islink(path) and os.path.realpath(path) == target
                and name not in CLIENT_NAMES):
            out.append(name)
    return out


def remove(names, directory):
    """Remove the shims ``names`` from ``directory``; UsageError for anything else."""
    target = client_path()
    for name in names:
        path = os.path.join(directory, name)
        if not (os.path.islink(path) and os.path.realpath(path) == target):
            raise UsageError("%s is not a hostlink shim" % path)
        os.unlink(path)


def path_map(environ):
    """[(container prefix, host prefix)] from HOSTLINK_PATH_MAP=/in=/out[:/in2=/out2]."""
    out = []
    for item in environ.get("HOSTLINK_PATH_MAP", "").split(":"):
        inside, sep, outside = item.partition("=")
        if not item:
            continue
        if not sep or not inside.startswith("/") or not outside.startswith("/"):
            raise UsageError("HOSTLINK_PATH_MAP entry %r is not /container/path=/host/path" % item)
        out.append((inside.rstrip("/") or "/", outside.rstrip("/") or "/"))
    return sorted(out, key=lambda pair: -len(pair[0]))  # the longest prefix wins


def to_host(path, mapping):
    """``path`` translated through the map, or None when no entry covers it."""
    for inside, outside in mapping:
        if path == inside or path.startswith(inside + "/"):
            return outside + path[len(inside):]
    return None


def mapped_workdir(workdir, environ):
    """(-w, or our own directory when no -w is given, through HOSTLINK_PATH_MAP; the container
    directory that was translated)."""
    mapping = path_map(environ)
    if workdir:
        return to_host(workdir, mapping) or workdir, workdir
    here = cwd()
    return to_host(here, mapping) or "", here


def cwd():
    """Our working directory, or "" when it is gone."""
    try:
        return os.getcwd()
    except OSError:
        return ""


def run(opts, words, environ, warnings):
    """hostlink shim install|list|remove [NAME...] [--dir DIR]"""
    from . import output
    if not words or words[0] not in ("install", "list", "remove"):
        raise UsageError("usage: hostlink shim install|list|remove [NAME...] [--dir DIR]")
    action, names, directory = words[0], words[1:], os.path.dirname(client_path())
    if "--dir" in names:
        i = names.index("--dir")
        if i + 1 >= len(names):
            raise UsageError("--dir needs a directory")
        directory = names[i + 1]
        del names[i:i + 2]
    if action == "list":
        for name in listing(directory):
            output.line(name)
        return 0
    if not names:
        raise UsageError("shim %s needs at least one program name" % action)
    if action == "install":
        for path in install(names, directory):
            output.line("%s -> runs %s on the host" % (path, os.path.basename(path)))
    else:
        remove(names, directory)
    return 0
