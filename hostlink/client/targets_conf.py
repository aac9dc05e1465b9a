"""targets.conf: named daemons, in the first hostlink's INI format, read unchanged.

Search order: --targets-file, HOSTLINK_TARGETS, /etc/hostlink/targets.conf,
~/.config/hostlink/targets.conf. Each ``[name]`` section has ``transport = unix|tcp``, ``socket``
or ``address`` and ``port`` (default 9876), ``token`` or ``token_file``, and ``timeout_ms``.
A target comes back as the keyword arguments of session.Endpoint, so that this module needs
nothing else of the client. Problems worth telling but not fatal are appended to ``warnings``,
a list the caller owns and prints.
"""

import os

from .errors import UsageError

SYSTEM_FILE = "/etc/hostlink/targets.conf"
LOCAL_SOCKET = "/run/hostlink/hostlink.sock"  # session.DEFAULT_SOCKET
KEYS = ("transport", "socket", "address", "port", "token", "token_file", "timeout_ms",
        "tls_fingerprint", "tls", "protocol")


def search_path(explicit, environ):
    """The targets file to use, or None when there is none."""
    if explicit:
        return explicit
    if environ.get("HOSTLINK_TARGETS"):
        return environ["HOSTLINK_TARGETS"]
    home = os.path.expanduser("~/.config/hostlink/targets.conf")
    for path in (SYSTEM_FILE, home):
        if os.path.exists(path):
            return path
    return None


def load(path, warnings):
    """{name: {key: value}} from a targets file; UsageError if it is missing or malformed."""
    import configparser
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except OSError as exc:
        raise UsageError("cannot read targets file %s: %s" % (path, exc.strerror)) from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError("invalid targets file %s: %s" % (path, str(exc).splitlines()[0])) from None
    try:
        if os.stat(path).st_mode & 0o044:
            warnings.append("warning: %s holds tokens and is readable by others; run: chmod 600 %s"
                            % (path, path))
    except OSError:
        pass
    out = {}
    for name in parser.sections():
        entry = dict(parser.items(name))
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise UsageError("%s: target [%s] has unknown key(s): %s" % (path, name, ", ".join(unknown)))
        out[name] = entry
    return out


def endpoint(name, entry, path):
    """The session.Endpoint arguments of one target entry; UsageError if it is incomplete."""
    transport = entry.get("transport", "unix" if "socket" in entry else "tcp")
    ep = {"name": name}
    try:
        ep["timeout_ms"] = int(entry.get("timeout_ms", "0"))
        ep["port"] = int(entry.get("port", "9876"))
    except ValueError:
        raise UsageError("%s: target [%s]: port and timeout_ms must be numbers" % (path, name)) from None
    if transport == "unix":
        ep["socket"] = entry.get("socket") or LOCAL_SOCKET
    elif transport == "tcp":
        if not entry.get("address"):
            raise UsageError("%s: target [%s] is tcp but has no address" % (path, name))
        ep["address"] = entry["address"]
    else:
        raise UsageError("%s: target [%s]: transport must be unix or tcp, not %r"
                         % (path, name, transport))
    ep["tls"] = entry.get("tls", "")  # unset: required (under the name hostlink-cli: session.py)
    if ep["tls"] not in ("", "required", "optional", "off"):
        raise UsageError("%s: target [%s]: tls must be required, optional or off, not %r"
                         % (path, name, ep["tls"]))
    ep["fingerprint"] = entry.get("tls_fingerprint", "")
    ep["protocol"] = entry.get("protocol", "hostlink")
    if ep["protocol"] not in ("hostlink", "hlnk"):
        raise UsageError("%s: target [%s]: protocol must be hostlink or hlnk" % (path, name))
    ep["token"] = entry.get("token", "") or _token_file(entry, name, path)
    return ep


def _token_file(entry, name, path):
    if not entry.get("token_file"):
        return ""
    try:
        with open(os.path.expanduser(entry["token_file"]), encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise UsageError("%s: target [%s]: cannot read token_file %s: %s"
                         % (path, name, entry["token_file"], exc.strerror)) from None


def where(ep):
    """Endpoint.where of Endpoint arguments."""
    return ep.get("socket") or "%s:%d" % (ep.get("address", ""), ep.get("port", 9876))


def all_names(explicit, environ, warnings):
    """Every target name in the targets file (for --all)."""
    path = search_path(explicit, environ)
    if path is None:
        raise UsageError("--all needs a targets file (--targets-file, HOSTLINK_TARGETS, %s)" % SYSTEM_FILE)
    return list(load(path, warnings))


def find(name, explicit, environ, warnings):
    """The Endpoint arguments of target ``name``; UsageError naming the file when it is not there."""
    path = search_path(explicit, environ)
    if path is None:
        raise UsageError("unknown target %r: no targets file (looked at --targets-file, "
                         "HOSTLINK_TARGETS, %s, ~/.config/hostlink/targets.conf)" % (name, SYSTEM_FILE))
    entries = load(path, warnings)
    if name not in entries:
        raise UsageError("unknown target %r in %s (known: %s)"
                         % (name, path, ", ".join(entries) or "none"))
    return endpoint(name, entries[name], path)


def listing(explicit, environ, warnings):
    """Rows for ``hostlink targets``: name, transport, where, default; the local socket first."""
    default = environ.get("HOSTLINK_TARGET") or ""
    local = environ.get("HOSTLINK_SOCKET") or LOCAL_SOCKET
    rows = [{"name": "(local)", "transport": "unix", "where": local, "default": not default}]
    path = search_path(explicit, environ)
    if path is not None:
        for name, entry in load(path, warnings).items():
            ep = endpoint(name, entry, path)
            rows.append({"name": name, "transport": "unix" if ep.get("socket") else "tcp",
                         "where": where(ep), "default": name == default})
    elif explicit is not None:
        raise UsageError("targets file %s not found" % explicit)
    if default and not any(r["default"] for r in rows):
        raise UsageError("HOSTLINK_TARGET=%s names no target in %s" % (default, path or "any file"))
    return rows
