"""Who runs the agent's commands on the host: never root unless asked (``--run-as root``).

Unless told, the installer picks the workspace's owner (the person the agent works for), else the
user who ran sudo, else a dedicated system user ``hostlink`` it makes, as the first hostlink's
``run_as_user = hostlink`` did. The dedicated user joins the docker group where there is one, so
``docker ps`` (an example of SKILL.md) works: that group is root's equal on the host, which the
report says; a person's own groups are left as they are.
"""

import grp
import os
import pwd
import subprocess

DEDICATED = "hostlink"


class RunAsError(ValueError):
    """The user cannot be used; the message says why."""


def choose(asked, workspace, earlier):
    """(user name, why) of who runs commands: ``asked``, else the earlier install's, else ours."""
    if asked:
        try:
            pwd.getpwnam(asked)
        except KeyError:
            raise RunAsError("--run-as %s: no such user on this host" % asked) from None
        return asked, "asked with --run-as"
    if earlier:
        return earlier, "as the earlier install chose (--run-as changes it)"
    if workspace and os.path.exists(workspace) and os.stat(workspace).st_uid != 0:
        return pwd.getpwuid(os.stat(workspace).st_uid).pw_name, "the workspace's owner"
    sudo = os.environ.get("SUDO_USER")
    if sudo and sudo != "root":
        return sudo, "the user who ran sudo"
    return DEDICATED, "a dedicated user"


def ensure(name, gid):
    """Make the dedicated user when it is missing (primary group: the socket's); report lines."""
    if name != DEDICATED:
        return _docker_note(name)
    report = []
    try:
        pwd.getpwnam(name)
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--gid", str(gid), "--home-dir", "/nonexistent",
                            "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment",
                            "hostlink: runs the agent's commands", name], capture_output=True, text=True)
        if r.returncode != 0:
            raise RunAsError("cannot create user %s: %s" % (name, r.stderr.strip()))
        report.append("made the system user %s to run commands (no login, no home)" % name)
    if _has_group("docker") and not _in_group(name, "docker"):
        subprocess.run(["usermod", "-a", "-G", "docker", name], check=True, capture_output=True)
        report.append("added %s to group docker so docker ps works from the agent: that group is "
                      "root's equal here (gpasswd -d %s docker takes it back)" % (name, name))
    return report


def _has_group(group):
    try:
        grp.getgrnam(group)
        return True
    except KeyError:
        return False


def _in_group(name, group):
    user = pwd.getpwnam(name)
    return grp.getgrnam(group).gr_gid in os.getgrouplist(name, user.pw_gid)


def _docker_note(name):
    if name == "root" or not _has_group("docker") or _in_group(name, "docker"):
        return []
    return ["%s is not in group docker: docker commands from the agent will fail (usermod -aG "
            "docker %s allows them, as root's equal)" % (name, name)]
