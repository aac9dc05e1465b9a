"""Files that hold a token must be private to the daemon's user: the exact fix, and doing it."""

import grp
import os
import pwd
import stat


def fix(path, st=None):
    """The shell command that makes ``path`` private to the daemon's user, or "" when it is."""
    st = st or os.stat(path)
    if not stat.S_IMODE(st.st_mode) & 0o077:
        return ""
    chown = "chown %d %s && " % (os.getuid(), path) if st.st_uid != os.getuid() else ""
    return "%schmod 600 %s" % (chown, path)


def make_private(path):
    """Do what fix() says (hostlink-install doctor --fix); returns the line that tells it."""
    st = os.stat(path)
    if st.st_uid != os.getuid():
        os.chown(path, os.getuid(), -1)
    os.chmod(path, 0o600)
    return "fixed %s: mode %04o (%s) -> 0600 (%s), as it holds the token" % (
        path, stat.S_IMODE(st.st_mode), owners(st), owners(os.stat(path)))


def owners(st):
    """user:group of a stat result, by name where there is one."""
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return "%s:%s" % (user, group)


def readers(st):
    """Who besides the owner may read: "group G", "every user", or both."""
    mode = stat.S_IMODE(st.st_mode)
    who = (["group %s" % owners(st).split(":")[1]] if mode & 0o070 else [])
    return " and ".join(who + (["every user"] if mode & 0o007 else []))
