"""``hostlink doctor``: walk the troubleshooting of references/setup.md, each finding with its fix.

Used inside a container (the client) and on the host (hostlink-install doctor). ``check``
returns findings; ``run`` (the command) has output.py print them.
"""

import os
import stat

from .errors import HostlinkError, UsageError
from .session import Session, endpoint


class Finding:
    """One check: its name, whether it passed, and what to do when it did not."""

    def __init__(self, name, ok, detail):
        self.name, self.ok, self.detail = name, ok, detail

    def line(self):
        """The finding as one line: ``ok`` or ``FAIL``, its name, its detail."""
        return "%-4s %s: %s" % ("ok" if self.ok else "FAIL", self.name, self.detail)


DAEMON_CONNECT_TIMEOUT_MS = 3000


def check(ep):
    """Findings for the endpoint ``ep`` (a Unix socket target); stops at the first failure."""
    out = []
    for step in (_directory, _socket, _permissions, _token, _daemon):
        finding = step(ep)
        out.append(finding)
        if not finding.ok:
            break
    return out


def _directory(ep):
    folder = os.path.dirname(ep.socket)
    if os.path.isdir(folder):
        return Finding("socket directory", True, folder)
    return Finding("socket directory", False, "%s is missing: mount the host's socket directory "
                   "here (-v /run/hostlink:%s)" % (folder, folder))


def _socket(ep):
    path = ep.socket
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Finding("socket", False, "no %s: hostlinkd is not running on the host (start it: "
                       "hostlinkd, or hostlink-install host), or it uses another socket path" % path)
    except PermissionError:
        return Finding("socket", False, "cannot look into %s: this user (uid %d) needs the "
                       "socket's group (group_add)" % (os.path.dirname(path), os.getuid()))
    if stat.S_ISSOCK(st.st_mode):
        return Finding("socket", True, path)
    return Finding("socket", False, "%s is not a socket: mount the directory, not the file" % path)


def _permissions(ep):
    st = os.stat(ep.socket)
    groups = os.getgroups()
    allowed = (st.st_uid == os.getuid() or os.getuid() == 0 or
               (st.st_gid in groups or st.st_gid == os.getgid()) and st.st_mode & 0o060 == 0o060
               or st.st_mode & 0o006 == 0o006)
    if allowed:
        return Finding("permissions", True, "mode %04o, group %d" % (st.st_mode & 0o777, st.st_gid))
    return Finding("permissions", False,
                   "this user (uid %d, groups %s) may not connect to %s (group %d, mode %04o): add "
                   "group %d (compose group_add, docker run --group-add %d)"
                   % (os.getuid(), groups, ep.socket, st.st_gid, st.st_mode & 0o777, st.st_gid,
                      st.st_gid))


def _token(ep):
    if ep.token:
        return Finding("token", True, "set")
    return Finding("token", False,
                   "no token: set HOSTLINK_TOKEN to auth_token of hostlink.conf on the host")


def _daemon(ep):
    try:
        with Session(ep, DAEMON_CONNECT_TIMEOUT_MS) as session:
            pong = session.ping()
    except HostlinkError as exc:
        return Finding("daemon", False, exc.message)
    return Finding("daemon", True, "node %s answers, up %ds, token accepted"
                   % (pong.node, pong.uptime_s))


def run(opts, words, environ, warnings):
    """hostlink doctor: exit 0 when every check passed, else 2."""
    from . import output
    ep = endpoint(opts, environ, warnings)
    if not ep.socket:
        raise UsageError("doctor checks a Unix socket target; %s is TCP" % ep.where)
    findings = check(ep)
    for f in findings:
        output.line(f.line())
    return 0 if all(f.ok for f in findings) else 2
