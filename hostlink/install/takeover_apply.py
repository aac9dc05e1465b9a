"""The writing side of a takeover (takeover.py plans it): back up the first hostlink's files beside
them, stop its daemon; at uninstall, put every file back as it was and start its daemon again.

What was done is recorded in the install state (``record``), so uninstall needs nothing else.
"""

import os
import shutil
import signal
import subprocess
import time

from . import takeover
from .takeover import BACKUP_SUFFIX

STOP_WAIT_S = 10  # its daemon gives running commands 2 s, then kills them and exits


def prepare(layout, opts, recorded):
    """The takeover.Plan of a first-hostlink install under the root, or None (``recorded``: the
    takeover an earlier run noted). Points the layout and options at its socket and group."""
    old = takeover.find(layout, recorded)
    tk = takeover.plan(old, layout) if old else None
    if tk is None:
        return None
    tk.record = recorded or record(tk)
    if recorded:
        tk.lines = ["the first hostlink's settings stay as taken over (its conf is kept in %s)"
                    % tk.old.backup]
    layout.socket, layout.socket_dir = tk.socket, os.path.dirname(tk.socket)
    opts.group = tk.group or opts.group
    return tk


def changes(tk, layout, planned, conf):
    """The install's changes with ``conf`` (the taken-over hostlink.conf) first; no tmpfiles line
    for a socket outside /run (it would re-mode that directory at every boot)."""
    run = os.path.join(layout.root, "run") + "/"
    return [conf] + [c for c in planned[1:]
                     if c.path != layout.tmpfiles or layout.socket_dir.startswith(run)]


def record(pl):
    """The takeover as the install state keeps it (JSON)."""
    old = pl.old
    return {"conf": old.conf, "backup": old.backup, "mode": old.mode, "uid": old.uid, "gid": old.gid,
            "units": [{"path": p, "name": n, "backup": p + BACKUP_SUFFIX} for p, n in old.units],
            "daemons": [{"argv": argv, "cwd": cwd} for _, argv, cwd in old.daemons]}


def backup(rec):
    """Copy its conf and units beside them (0600: the conf holds the token), once: a second run
    must not back up our own file. Returns what it did."""
    lines = []
    for path, kept in [(rec["conf"], rec["backup"])] + [(u["path"], u["backup"]) for u in rec["units"]]:
        if os.path.exists(kept) or not os.path.exists(path):
            continue
        shutil.copyfile(path, kept + ".tmp")
        os.chmod(kept + ".tmp", 0o600)
        os.replace(kept + ".tmp", kept)
        lines.append("backed up %s -> %s" % (path, kept))
    return lines


def stop(rec, systemd):
    """Stop its daemon(s) so that ours can take the socket; returns what it did."""
    lines = []
    for unit in rec["units"] if systemd else ():
        # Ours replaces hostlinkd.service itself; a unit of another name must not start at boot.
        verb = ["stop"] if unit["name"] == "hostlinkd.service" else ["disable", "--now"]
        subprocess.run(["systemctl"] + verb + [unit["name"]], check=False)
        lines.append("systemd: %s %s" % (" ".join(verb), unit["name"]))
    from .first_hostlink import running  # and any started by hand
    for pid, _, _ in running(rec["conf"]):
        os.kill(pid, signal.SIGTERM)
        lines.append("stopped its hostlinkd (pid %d)%s" % (pid, _wait_gone(pid)))
    return lines


def _wait_gone(pid):
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return ""
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return ", killed after %d s" % STOP_WAIT_S


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def restore(rec, systemd):
    """Put its conf and units back as they were and start its daemon again; returns what it did."""
    lines = []
    conf_back = _put_back(rec["backup"], rec["conf"], rec["mode"], rec["uid"], rec["gid"])
    if conf_back:
        lines.append("restored %s (mode %04o) from %s" % (rec["conf"], rec["mode"], rec["backup"]))
    for unit in rec["units"]:
        if _put_back(unit["backup"], unit["path"], 0o644, 0, 0):
            lines.append("restored %s" % unit["path"])
    if not conf_back:
        return lines + ["no backup %s: the first hostlink's conf was not restored" % rec["backup"]]
    if systemd and rec["units"]:
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        for unit in rec["units"]:
            subprocess.run(["systemctl", "enable", "--now", unit["name"]], check=False)
            lines.append("systemd: %s enabled and started again" % unit["name"])
        return lines
    for daemon in rec["daemons"]:
        lines.append(_start(daemon["argv"], daemon["cwd"]))
    return lines


def _put_back(kept, path, mode, uid, gid):
    if not os.path.exists(kept):
        return False
    os.chown(kept, uid, gid)
    os.chmod(kept, mode)
    os.replace(kept, path)
    return True


def _start(argv, cwd):
    """Start its daemon as it was started (it forks into the background unless -f)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return "could not start its hostlinkd again (%s): %s" % (" ".join(argv), exc.strerror)
    if "-f" not in argv and "--foreground" not in argv:
        proc.wait(STOP_WAIT_S)  # the parent exits once its child runs in the background
    return "started its hostlinkd again: %s" % " ".join(argv)
