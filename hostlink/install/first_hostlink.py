"""Facts about the first hostlink (C, v1.6) an install of it leaves: how its daemon reads its conf,
the defaults it runs with, what each of its keys is called here, and where its pieces are.

Written from its documented behaviour (its SPEC.md, install.sh and example conf); used by
takeover.py. Its conf is read as its daemon reads it: ``key = value`` in any section, unknown keys
ignored, booleans true only for true/yes/1, numbers read up to the first non-digit.
"""

import os

# What its daemon runs with when its conf does not say.
DEFAULTS = {
    "node_name": "hostlink", "unix_enabled": "true", "unix_path": "/run/hostlink/hostlink.sock",
    "unix_mode": "0660", "unix_group": "hostlink", "tcp_enabled": "false",
    "tcp_bind": "127.0.0.1", "tcp_port": "9876", "max_concurrent": "8",
    "default_timeout_ms": "30000", "max_timeout_ms": "300000", "shell": "/bin/sh",
    "default_max_output_bytes": "4194304", "max_output_bytes": "67108864",
    "job_default_timeout_ms": "86400000", "job_max_timeout_ms": "604800000",
    "job_max_spool_bytes": "268435456", "job_retention_s": "86400", "log_target": "stderr",
    "log_level": "info", "output_tmpdir": "/run/hostlink/output",
}
# Its key -> ours, and how its value is read.
RENAMED = {
    "node_name": ("node_name", "s"), "auth_token": ("auth_token", "s"),
    "unix_enabled": ("unix_enabled", "b"), "unix_path": ("socket", "s"),
    "unix_mode": ("socket_mode", "o"), "unix_group": ("socket_group", "s"),
    "tcp_enabled": ("tcp_enabled", "b"), "tcp_bind": ("tcp_bind", "s"), "tcp_port": ("tcp_port", "i"),
    "max_concurrent": ("max_concurrent", "i"), "default_timeout_ms": ("default_timeout_ms", "i"),
    "max_timeout_ms": ("max_timeout_ms", "i"), "shell": ("shell", "s"),
    "default_max_output_bytes": ("default_max_output_bytes", "i"),
    "max_output_bytes": ("max_output_bytes", "i"),
    "job_default_timeout_ms": ("job_default_timeout_ms", "i"),
    "job_max_timeout_ms": ("job_max_timeout_ms", "i"),
    "job_max_spool_bytes": ("job_max_spool_bytes", "i"), "job_retention_s": ("job_retention_s", "i"),
    "log_target": ("log_target", "s"), "log_level": ("log_level", "l"),
    "output_tmpdir": ("output_tmpdir", "s"),
    "run_as_user": ("run_as_user", "s"),
}
DROPPED = {
    "max_concurrent_io": "transfers count in max_concurrent with every other command",
}
# Keys only its confs have: one of them and no key of ours makes a conf its.
ITS_OWN = ("unix_path", "unix_mode", "unix_group", "unix_enabled", "output_tmpdir",
           "max_concurrent_io")
OUR_OWN = ("socket", "socket_mode", "socket_group", "audit_log", "admin_socket", "tls",
           "policy_dir", "auth_token_file", "job_spool_dir", "namespace_pid")
BINARIES = ("/usr/local/bin/hostlinkd", "/usr/local/bin/hostlink-cli")
UNITS = ("hostlinkd.service", "hostlink.service")
OTHER_CONFS = ("hostlink-ro.conf",)  # its read-only daemon's (install.sh): left running


def parse(text):
    """({key: value}, {key: line number}) as its daemon reads ``text``: the last value wins."""
    values, lines = {}, {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
            lines[key.strip()] = n
    return values, lines


def looks_like(text):
    """Whether ``text`` is a first-hostlink conf rather than one written for hostlinkd."""
    values, _ = parse(text)
    if any(line.strip().startswith("[client ") for line in text.splitlines()):
        return False  # ours: per-client policy, which it never had
    return not any(k in values for k in OUR_OWN) and (
        any(k in values for k in ITS_OWN) or set(values) <= set(RENAMED) | set(DROPPED))


def c_bool(value):
    return value in ("true", "yes", "1")


def c_int(value):
    """atoi: the leading digits (and sign), 0 when there are none."""
    import re
    m = re.match(r"[+-]?[0-9]+", value)
    return int(m.group()) if m else 0


def translate(key, value):
    """(our key, value as hostlinkd reads it with the meaning the first hostlink gave it)."""
    ours, kind = RENAMED[key]
    if kind == "b":
        return ours, "true" if c_bool(value) else "false"
    if kind == "i":
        return ours, str(c_int(value))
    if kind == "o":
        try:
            return ours, "0%o" % int(value or "0", 8)
        except ValueError:
            return ours, "0"
    if kind == "l":  # any other word was info to it
        return ours, {"warn": "warning", "debug": "debug", "error": "error"}.get(value, "info")
    return ours, value


def note(key, ours, given, old_value, value):
    """Where a line of the new conf came from, when that is not plain."""
    if not given:
        return "the first hostlink's default"
    if ours != key:
        return "%s in its conf" % key
    if old_value != value:
        return "%s = %s in its conf" % (key, old_value)
    return ""


def find_rest(old, layout):
    """Its units, running daemons for this conf, binaries, targets.conf and other confs."""
    r = lambda p: os.path.join(layout.root, p.lstrip("/"))
    for name in UNITS:
        path = r("/etc/systemd/system/" + name)
        if _runs_hostlinkd(path):
            old.units.append((path, name))
    old.daemons = running(old.conf)
    old.binaries = [r(p) for p in BINARIES if os.path.isfile(r(p))]
    targets = r("/etc/hostlink/targets.conf")
    old.targets = targets if os.path.exists(targets) else ""
    etc = os.path.dirname(old.conf)
    old.others = [os.path.join(etc, n) for n in OTHER_CONFS if os.path.exists(os.path.join(etc, n))]


def _runs_hostlinkd(unit):
    """Whether the unit file starts the first hostlink's daemon (an ELF hostlinkd, not ours)."""
    try:
        with open(unit, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    for line in text.splitlines():
        if line.strip().startswith("ExecStart="):
            words = line.split("=", 1)[1].split()
            return bool(words) and os.path.basename(words[0]) == "hostlinkd"
    return False


def running(conf):
    """(pid, argv, cwd) of each running first-hostlink hostlinkd whose conf is ``conf``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
            cwd = os.readlink("/proc/%s/cwd" % name)
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "hostlinkd" and _same(_conf_arg(argv), cwd, conf):
            out.append((int(name), argv, cwd))
    return out


def _conf_arg(argv):
    """The conf its daemon was started with (-c, --config), or its default."""
    for i, arg in enumerate(argv[1:], 1):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg.startswith("-c") and len(arg) > 2:
            return arg[2:]
    return "/etc/hostlink/hostlink.conf"


def _same(path, cwd, conf):
    return os.path.realpath(os.path.join(cwd, path)) == os.path.realpath(conf)
