"""Taking over a first-hostlink install (C, v1.6): what is there, and the plan that keeps it.

``find`` reads the old state (its hostlink.conf read the way its daemon reads it, its systemd
units, its running daemons, its binaries and targets.conf); ``plan`` turns that into data: every
setting kept under our name, the defaults it ran with written out, what is dropped and why, the
lines to tell; ``render`` gives the new hostlink.conf. Nothing here writes: takeover_apply.py
backs up, stops, and restores.
"""

import os
import stat
import sys

from ..daemon import config as hl_config, first_conf
from . import first_hostlink as first
from .render import ini_value, render

BACKUP_SUFFIX = ".first-hostlink"
OUR_HEADER = "# hostlinkd configuration, written by hostlink-install"


class TakeoverError(Exception):
    """The old install cannot be taken over as it is; the message says what to change."""


class Old:
    """What the first hostlink left: its conf (text, mode, owner), units, daemons, binaries."""

    def __init__(self, conf, text, st, backup):
        self.conf = conf
        self.text = text
        self.mode, self.uid, self.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        self.backup = backup  # where its conf is (or will be) kept
        self.values, self.lines = first.parse(text)
        self.units = []  # (path, name) of systemd units that run its hostlinkd
        self.daemons = []  # (pid, argv, cwd) of its running hostlinkd for this conf
        self.binaries = []
        self.targets = ""
        self.others = []  # its other confs (hostlink-ro.conf): left alone


class Plan:
    """The new conf's settings in order (key, value, note), and what to tell."""

    def __init__(self, old):
        self.old = old
        self.settings = []
        self.dropped = []  # (first hostlink's key, why)
        self.lines = []  # what the takeover does, for the report

    def value(self, key):
        return next((v for k, v, _ in self.settings if k == key), None)

    @property
    def token(self):
        return self.value("auth_token") or ""

    @property
    def socket(self):
        return self.value("socket")

    @property
    def group(self):
        return self.value("socket_group") or ""


def is_ours(text):
    return text.startswith(OUR_HEADER)


def find(layout, recorded=None):
    """The first hostlink's install under ``layout``, or None. ``recorded`` is the takeover an
    earlier run noted (its conf then lives in the backup). TakeoverError: a conf nobody knows."""
    backup = layout.conf + BACKUP_SUFFIX
    if recorded and os.path.exists(backup):
        with open(backup, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
        old = Old(layout.conf, text, os.stat(backup), backup)
        old.mode, old.uid, old.gid = recorded["mode"], recorded["uid"], recorded["gid"]
    else:
        try:
            with open(layout.conf, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        if is_ours(text):
            return None
        if not first.looks_like(text):
            raise TakeoverError(
                "%s was not written by hostlink-install and is not the first hostlink's conf; it "
                "is left as it is: move it aside to install afresh, or run hostlinkd with it"
                % layout.conf)
        old = Old(layout.conf, text, os.stat(layout.conf), backup)
    first.find_rest(old, layout)
    return old


def plan(old, layout):
    """The Plan that keeps what ``old`` ran with; TakeoverError for a value we cannot keep."""
    pl = Plan(old)
    # Its own lines in their order, then the defaults it ran with for what it did not say.
    effective = dict(sorted(old.values.items(), key=lambda kv: old.lines[kv[0]]))
    effective.update((k, v) for k, v in first.DEFAULTS.items() if k not in old.values)
    for key, value in effective.items():
        if key in first.DROPPED:
            if key in old.values:
                pl.dropped.append((key, first.DROPPED[key]))
            continue
        if key not in first.RENAMED:
            pl.dropped.append((key, "the first hostlink ignored it too (not one of its keys)"))
            continue
        ours, value = first.translate(key, value)
        note = first.note(key, ours, key in old.values, old.values.get(key), value)
        pl.settings.append((ours, value, note))
    _adjust(pl, effective)
    have = {k for k, _, _ in pl.settings}
    pl.settings += [(k, str(v), "the first hostlink's default") for k, v in
                    first_conf.DEFAULTS.items() if k not in have and k != "socket_group"]
    pl.settings += [("audit_log", layout.audit_log, ""), ("admin_socket", layout.admin_socket, ""),
                    ("job_spool_dir", os.path.join(layout.root, "var/lib/hostlink/jobs"),
                     "its jobs were in output_tmpdir/jobs; ours are root's alone")]
    _check(pl, old)
    pl.lines = report(pl)
    return pl


def _adjust(pl, effective):
    """What a setting needs here to keep its meaning (TCP, a missing group)."""
    import grp
    out = []
    for key, value, note in pl.settings:
        if key == "socket_group":
            try:
                grp.getgrnam(value)
            except KeyError:
                pl.dropped.append(("unix_group", "group %s does not exist; the first hostlink "
                                   "left the socket in its own group, as hostlinkd will" % value))
                continue
        out.append((key, value, note))
    if first.c_bool(effective.get("tcp_enabled", "")):
        # Its clients speak HLNK in clear; required TLS would lock every one of them out.
        out.append(("tls", "optional", "its clients send the token in clear; set tls = required "
                                       "once every client pins tls_fingerprint"))
        if effective.get("tcp_bind") in ("0.0.0.0", "::", ""):
            out.append(("tcp_allow_any", "true", "it listened on every network, as it did"))
    pl.settings = out


def _check(pl, old):
    """Every value must mean the same here: hostlinkd's own parser reads the result."""
    text = "".join("%s = %s\n" % (k, v) for k, v, _ in pl.settings)
    try:
        hl_config.parse(text, old.conf)
    except hl_config.ConfigError as exc:
        raise TakeoverError("cannot keep a setting of %s as it is: %s; change it there and run "
                            "again" % (old.conf, str(exc).split(": ", 1)[-1])) from None
    for _, value, _ in pl.settings:
        try:
            ini_value(value)
        except ValueError as exc:
            raise TakeoverError("%s: %s" % (old.conf, exc)) from None


def render_conf(pl, token):
    """The text of the new hostlink.conf (``token`` replaces the old one on --rotate-token)."""
    settings = [(k, token if k == "auth_token" else v, n) for k, v, n in pl.settings]
    return render("installer", "takeover.conf.j2", backup=pl.old.backup,
                  settings=settings)


def report(pl):
    """What the takeover keeps, changes and leaves, one line each."""
    old = pl.old
    got = dict((k, v) for k, v, _ in pl.settings)
    lines = ["taking over the first hostlink's install: %s" % old.conf,
             "kept: the token (every client and targets.conf keeps working), node_name = %s, "
             "socket %s (mode %s, group %s)" % (got["node_name"], got["socket"],
                                               got["socket_mode"], got.get("socket_group") or "-")]
    if got.get("run_as_user"):
        lines.append("kept: run_as_user = %s: commands run as %s, as they did"
                     % (got["run_as_user"], got["run_as_user"]) + _no_user(got["run_as_user"]))
        if not runnable_by(sys.executable, got["run_as_user"]):
            lines.append("warning: %s cannot run %s, so transfers (put, get, df), which run as "
                         "that user, fail; install hostlink with a Python it can run"
                         % (got["run_as_user"], sys.executable))
    renamed = [n for _, _, n in pl.settings if n.endswith(" in its conf")]
    if renamed:
        lines.append("renamed: %s" % ", ".join(
            "%s -> %s" % (n[:-len(" in its conf")], k)
            for k, _, n in pl.settings if n.endswith(" in its conf")))
    defaults = ["%s = %s" % (k, v) for k, v, n in pl.settings if n == "the first hostlink's default"]
    if defaults:
        lines.append("written out, the defaults it ran with: %s" % ", ".join(defaults))
    lines += ["dropped: %s (%s)" % d for d in pl.dropped]
    if got.get("tls") == "optional":
        lines.append("TCP %s:%s stays open in clear for its clients (tls = optional); hostlink "
                     "clients use TLS there" % (got.get("tcp_bind"), got.get("tcp_port")))
    lines.append("backup: %s -> %s (uninstall puts it back, mode %04o %s)"
                 % (old.conf, old.backup, old.mode, _owner(old.uid, old.gid)))
    if old.mode & 0o077 or old.uid != os.getuid():
        lines.append("mode: %s was %04o %s, so %s could read its token; the new file is 0600 %s"
                     % (old.conf, old.mode, _owner(old.uid, old.gid), _readers(old.mode, old.gid),
                        _owner(os.getuid(), os.getgid())))
    lines += ["systemd unit %s runs its hostlinkd: kept as %s%s, replaced by hostlinkd.service"
              % (path, path, BACKUP_SUFFIX) for path, _ in old.units]
    lines += ["its hostlinkd (pid %d) stops; hostlinkd starts on %s" % (pid, got["socket"])
              for pid, _, _ in old.daemons]
    lines += ["kept %s: its client speaks to hostlinkd unchanged" % b for b in old.binaries
              if b.endswith("-cli")]
    lines += ["kept %s (nothing starts it now; uninstall starts it again)" % b for b in old.binaries
              if not b.endswith("-cli")]
    if old.targets:
        lines.append("kept %s: hostlink reads it unchanged" % old.targets + _readable(old.targets))
    lines += ["left alone: %s and the daemon it runs" % o for o in old.others]
    lines.append("containers that mount the socket file itself (not its directory) must be "
                 "restarted to reach the new socket")
    return lines


def _owner(uid, gid):
    import grp
    import pwd
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return "%s:%s" % (user, group)


def _readers(mode, gid):
    who = ["group %s" % _owner(0, gid).split(":")[1]] if mode & 0o070 else []
    return " and ".join(who + (["every user"] if mode & 0o007 else [])) or "its owner"


def runnable_by(path, name):
    """Whether user ``name`` may run the program ``path`` (every directory above it searchable)."""
    import grp
    import pwd
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return True  # told apart: no such user
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    path, chain = os.path.realpath(path), []
    while path not in chain:  # the program, then each directory up to /
        chain.append(path)
        path = os.path.dirname(path)
    for p in chain:
        st = os.stat(p)
        bit = stat.S_IXUSR if st.st_uid == user.pw_uid else \
            stat.S_IXGRP if st.st_gid in groups else stat.S_IXOTH
        if user.pw_uid and not st.st_mode & bit:
            return False
    return True


def _no_user(name):
    import pwd
    try:
        pwd.getpwnam(name)
        return ""
    except KeyError:
        return (" (warning: user %s does not exist; the first hostlink then ran commands as "
                "root, hostlinkd refuses them until it exists: useradd --system %s)" % (name, name))


def _readable(path):
    try:
        if os.stat(path).st_mode & 0o044:
            return " (warning: it holds tokens and others may read it: chmod 600 %s)" % path
    except OSError:
        pass
    return ""
