"""``hostlink doctor``: walk the troubleshooting of references/setup.md, each finding with its fix.

Used inside a container (the client) and on the host (hostlink-install doctor). Returns findings;
the caller prints them.
"""

import os
import stat


class Finding:
    """One check: its name, whether it passed, and what to do when it did not."""

    def __init__(self, name, ok, detail):
        self.name, self.ok, self.detail = name, ok, detail

    def line(self):
        return "%-4s %s: %s" % ("ok" if self.ok else "FAIL", self.name, self.detail)


def check(ep):
    """Findings for the endpoint ``ep`` (a Unix socket target); stops at the first failure."""
    from .session import Session
    from .errors import HostlinkError
    out = []
    path = ep.socket
    folder = os.path.dirname(path)

    def add(name, ok, detail):
        out.append(Finding(name, ok, detail))
        return ok

    if not add("socket directory", os.path.isdir(folder),
               folder if os.path.isdir(folder) else
               "%s is missing: mount the host's socket directory here (-v /run/hostlink:%s)"
               % (folder, folder)):
        return out
    try:
        st = os.stat(path)
    except FileNotFoundError:
        add("socket", False, "no %s: hostlinkd is not running on the host (start it: hostlinkd, "
                             "or hostlink-install host), or it uses another socket path" % path)
        return out
    except PermissionError:
        add("socket", False, "cannot look into %s: this user (uid %d) needs the socket's group "
                             "(group_add)" % (folder, os.getuid()))
        return out
    if not add("socket", stat.S_ISSOCK(st.st_mode),
               path if stat.S_ISSOCK(st.st_mode) else "%s is not a socket: mount the directory, "
                                                      "not the file" % path):
        return out
    groups = os.getgroups()
    allowed = (st.st_uid == os.getuid() or os.getuid() == 0 or
               (st.st_gid in groups or st.st_gid == os.getgid()) and st.st_mode & 0o060 == 0o060
               or st.st_mode & 0o006 == 0o006)
    if not add("permissions", allowed,
               "mode %04o, group %d" % (st.st_mode & 0o777, st.st_gid) if allowed else
               "this user (uid %d, groups %s) may not connect to %s (group %d, mode %04o): add "
               "group %d (compose group_add, docker run --group-add %d)"
               % (os.getuid(), groups, path, st.st_gid, st.st_mode & 0o777, st.st_gid, st.st_gid)):
        return out
    if not add("token", bool(ep.token), "set" if ep.token else
               "no token: set HOSTLINK_TOKEN to auth_token of hostlink.conf on the host"):
        return out
    try:
        session = Session(ep, 3000)
        try:
            r = session.ping()
        finally:
            session.close()
        add("daemon", True, "node %s answers, up %ds, token accepted" % (r.node, r.uptime_s))
    except HostlinkError as exc:
        add("daemon", False, exc.message)
    return out
