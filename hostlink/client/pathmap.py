"""``HOSTLINK_PATH_MAP=/in=/out[:/in2=/out2]``: container paths that are host paths elsewhere. The
working directory (and -w) goes through it for every command; a shim's arguments too, where they
name an existing path under the map (shimrun.py). Loaded only when the variable is set.
"""

import os

from .errors import UsageError


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


def map_args(args, environ):
    """Shim arguments with mapped paths made host paths: an argument that is an existing absolute
    path under the map, the SRC of SRC:DST (docker's -v "$PWD":/w), and either after --opt=.
    Anything else is left alone: a relative path already works (the directory is mapped)."""
    mapping = path_map(environ)
    out = []
    for arg in args:
        opt, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if not eq and opt:
            out.append(arg)
            continue
        out.append(opt + eq + _map_value(value, mapping))
    return out


def _map_value(value, mapping):
    host = _existing(value, mapping)
    if host is not None:
        return host
    src, colon, rest = value.partition(":")
    host = _existing(src, mapping) if colon else None
    return host + colon + rest if host is not None else value


def _existing(path, mapping):
    if not path.startswith("/") or not os.path.exists(path):
        return None
    return to_host(path, mapping)


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
