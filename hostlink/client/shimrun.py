"""A shim as it starts (main.run_shim): its timeout, read from the settings file beside its link,
and its arguments with paths of the mapped workspace made host paths. On every shim call, so
``posix`` only: shims.py (install, list, remove) needs ``os`` and is not loaded here.

A shim's settings live in ``.NAME.hostlink`` beside the link ``NAME`` (``key = value`` lines,
written by ``hostlink shim install NAME --timeout MS``): read without asking the daemon, and kept
with the link whatever directory it is in.
"""

import posix

SETTINGS_MAX = 4096  # a few key = value lines


def settings_path(path):
    """The settings file of the shim at ``path``."""
    head, _, name = path.rpartition("/")
    return "%s/.%s.hostlink" % (head or ".", name)


def settings(path):
    """The shim's settings as {key: value}; {} when it has none."""
    try:
        fd = posix.open(settings_path(path), posix.O_RDONLY)
    except OSError:
        return {}
    try:
        text = posix.read(fd, SETTINGS_MAX).decode("utf-8", "replace")
    finally:
        posix.close(fd)
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def timeout(path, environ):
    """The -T of a shim: its own timeout_ms, else HOSTLINK_TIMEOUT_MS, else "0": none, as a
    program run here has none (the daemon's max_timeout_ms still caps it)."""
    own = settings(path).get("timeout_ms")
    if own is not None:
        return own
    return environ.get("HOSTLINK_TIMEOUT_MS") or "0"


def words(path, argv, environ):
    """[the program's name] + its arguments, those naming mapped paths translated."""
    prog = path.rpartition("/")[2]
    if not environ.get("HOSTLINK_PATH_MAP"):
        return [prog] + list(argv)
    from .pathmap import map_args
    return [prog] + map_args(argv, environ)
