"""Host programs under their own names: ``docker`` in the container is a link to the client that
runs ``docker`` on the host (exact argv, no shell). ``hostlink shim install|list|remove`` manage
the links here; shimrun.py is what a shim does as it starts, pathmap.py what HOSTLINK_PATH_MAP does.
"""

import os

from . import CLIENT_NAMES
from .errors import UsageError
from .shimrun import settings, settings_path

# Names a shim may not take: the shells and interpreters the container's own scripts run (the
# client's header itself runs /bin/sh and python3), env, and hostlink itself.
SHADOWED = ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox",
            "env", "sudo", "su")


def client_path():
    """The client file itself (the zipapp), whatever name it was started under."""
    import sys
    return os.path.realpath(sys.argv[0])


def refusal(name):
    """Why ``name`` cannot be a shim, or ""."""
    if not name or "/" in name or name.startswith((".", "-")) or name != name.strip():
        return "%r is not a program name" % name
    if name in CLIENT_NAMES or name.startswith(("hostlink", "python")):
        return "%r is this client's own name (or its interpreter's)" % name
    if name in SHADOWED:
        return "%r would shadow this container's %s" % (name, "shell" if name != "env" else "env")
    return ""


def default_dir(home):
    """Where shims go without --dir: the client's own directory when we may write there, else
    ~/.local/bin (made if need be); UsageError naming the directory and --dir otherwise."""
    own = os.path.dirname(client_path())
    if os.access(own, os.W_OK):
        return own
    local = os.path.join(home, ".local", "bin") if home else ""
    try:
        if local:
            os.makedirs(local, exist_ok=True)
            if os.access(local, os.W_OK):
                return local
    except OSError:
        pass
    raise UsageError("cannot write in %s (the client's directory)%s; choose a directory with "
                     "--dir DIR (one on PATH)" % (own, " nor in %s" % local if local else ""))


def install(names, directory, timeout_ms=None):
    """Make each name a link to the client in ``directory`` (with its timeout); the paths made."""
    for name in names:
        why = refusal(name)
        if why:
            raise UsageError("%s cannot be a shim: %s" % (name, why))
    target = client_path()
    made = []
    for name in names:
        path = os.path.join(directory, name)
        if os.path.lexists(path) and not is_shim(path, target):
            raise UsageError("%s exists and is not a hostlink shim; remove it first" % path)
        if not os.path.lexists(path):
            os.symlink(os.path.relpath(target, directory), path)
        _write_settings(path, timeout_ms)
        made.append(path)
    return made


def _write_settings(path, timeout_ms):
    side = settings_path(path)
    if timeout_ms is None:
        if os.path.lexists(side):
            os.unlink(side)
        return
    tmp = side + ".tmp"
    with open(tmp, "w") as f:
        f.write("# hostlink shim settings (hostlink shim install --timeout)\ntimeout_ms = %d\n"
                % timeout_ms)
    os.replace(tmp, side)


def is_shim(path, target):
    return os.path.islink(path) and os.path.realpath(path) == target


def search_dirs(environ, extra=()):
    """The directories of PATH and ``extra``, each once, in order."""
    out, seen = [], set()
    for d in list(extra) + environ.get("PATH", "").split(":"):
        real = os.path.realpath(d) if d else ""
        if d and real not in seen and os.path.isdir(d):
            seen.add(real)
            out.append(d)
    return out


def listing(directories):
    """[(name, path, timeout_ms or None)] of the shims in ``directories``."""
    target = client_path()
    out = []
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name not in CLIENT_NAMES and is_shim(path, target):
                out.append((name, path, settings(path).get("timeout_ms")))
    return out


def remove(names, directories):
    """Remove the shims ``names`` (the first found in ``directories``); UsageError for anything else."""
    target = client_path()
    for name in names:
        found = [os.path.join(d, name) for d in directories if is_shim(os.path.join(d, name), target)]
        if not found:
            raise UsageError("%s is not a hostlink shim in %s" % (name, " or ".join(directories)))
        os.unlink(found[0])
        if os.path.lexists(settings_path(found[0])):
            os.unlink(settings_path(found[0]))


def parse(words):
    """(action, names, directory or "", timeout_ms or None) from the words after ``shim``."""
    if not words:
        raise UsageError("usage: hostlink shim install|list|remove [NAME...] [--dir DIR] "
                         "[--timeout MS] (see hostlink help shim)")
    if words[0] not in ACTIONS:
        from .help import unknown
        raise unknown("shim action", words[0], ACTIONS, "hostlink help shim")
    action, rest, i = words[0], words[1:], 0
    names, values = [], {}
    while i < len(rest):
        key, eq, value = rest[i].partition("=")
        if key in ("--dir", "--timeout"):
            if not eq:
                i += 1
                if i >= len(rest):
                    raise UsageError("%s needs a value" % key)
                value = rest[i]
            values[key] = value
        elif key.startswith("-"):
            raise UsageError("shim: unknown flag %s (known: --dir DIR, --timeout MS)" % key)
        else:
            names.append(rest[i])
        i += 1
    if action != "list" and not names:
        raise UsageError("shim %s needs at least one program name" % action)
    if "--timeout" in values and action != "install":
        raise UsageError("--timeout is for shim install")
    timeout_ms = None
    if "--timeout" in values:
        from .session import whole_ms
        timeout_ms = whole_ms(values["--timeout"], "--timeout")
    return action, names, values.get("--dir", ""), timeout_ms


ACTIONS = ("install", "list", "remove")


def run(opts, words, environ, warnings):
    """hostlink shim install|list|remove [NAME...] [--dir DIR] [--timeout MS]"""
    from . import output
    action, names, directory, timeout_ms = parse(words)
    home = environ.get("HOME", "")
    # Where shims are looked for (list, remove): DIR, or the two default places, then PATH.
    places = [directory] if directory else [os.path.dirname(client_path()),
                                            os.path.join(home, ".local", "bin")]
    if action == "list":
        output.shims(listing(search_dirs(environ, places)),
                     "PATH or in %s" % " or ".join(places))
        return 0
    if action == "install":
        directory = directory or default_dir(home)
        for path in install(names, directory, timeout_ms):
            output.line("%s -> runs %s on the host%s"
                        % (path, os.path.basename(path), _timeout_note(timeout_ms)))
        if os.path.realpath(directory) not in [os.path.realpath(d) for d in search_dirs(environ)]:
            output.say("note: %s is not on PATH; add it: export PATH=\"%s:$PATH\""
                       % (directory, directory))
    else:
        remove(names, search_dirs(environ, places) if not directory else places)
    return 0


def _timeout_note(timeout_ms):
    if timeout_ms is None:
        return ""
    return " (no timeout)" if timeout_ms == 0 else " (timeout %d ms)" % timeout_ms
