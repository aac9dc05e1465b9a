"""``hostlink-install openclaw``: hostlink as an OpenClaw skill, for a gateway on this host and
for agents in OpenClaw's Docker sandbox (openclaw_plan.py says what changes, and why).

Every place the token was written is recorded in STATE, so ``host --rotate-token`` writes the
new one there too and ``uninstall`` takes hostlink out of the OpenClaw config again, giving back
the values it replaced.
"""

import grp
import json
import os
import pwd
import subprocess

from . import host, owned
from .openclaw_plan import SANDBOX_SOCKET_DIR, Options, host_facts, plan, read_config, validate

STATE = "/var/lib/hostlink/openclaw.json"


def _state_path(layout):
    return os.path.join(layout.root, STATE.lstrip("/"))


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def install(opts):
    """Run ``hostlink-install openclaw``; returns (report lines, changes)."""
    layout = host.Layout(host.Options(root=opts.root))
    token, socket, gid = host_facts(layout)
    if gid < 0:
        raise host.InstallError("%s names no socket_group: the sandbox user needs one" % layout.conf)
    earlier = _load(_state_path(layout))
    t, user_changes, root_changes = plan(opts, layout, token, gid, socket)
    report = [validate(t, t.doc.text)]
    changes = user_changes + root_changes
    if opts.dry_run:
        return report + ["dry run: nothing was changed"], changes
    skill = [c for c in user_changes if c.path.startswith(t.skill_dir + os.sep)]
    owned.write_as(t.uid, t.gid, [c for c in user_changes if c not in skill])
    owned.write_as(*owned.owner(t.workspace), skill)  # the workspace may be another user's
    for ch in root_changes:
        if ch.changed:
            host.write(ch)
    report += ["%s %s" % ("wrote" if c.changed else "unchanged", c.path) for c in changes]
    if t.sandbox:
        _make_socket_dir(layout, gid)
    added = earlier.get("added_to_group") or _join_group(t.uid, gid, report)
    _record(layout, t, earlier, added)
    if any(c.changed for c in root_changes):
        report.append(host.start_daemon(layout, True))
    return report + next_steps(t), changes


def next_steps(t):
    steps = ["", "Next, as the OpenClaw user:",
             "  openclaw skills info hostlink        # eligible: yes",
             "  openclaw gateway restart             # the gateway reads %s at start" % t.env_file]
    if t.sandbox:
        steps.append("  openclaw sandbox recreate --all      # sandboxes get the socket, user and env")
    return steps


def _make_socket_dir(layout, gid):
    folder = os.path.join(layout.root, SANDBOX_SOCKET_DIR.lstrip("/"))
    made = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    os.chown(folder, 0, gid)
    os.chmod(folder, 0o750)
    state = _load(layout.state)
    if made and state:  # host's uninstall removes it once the daemon has stopped
        state["dirs"] = sorted(set(state.get("dirs", [])) | {folder})
        host.write(host.Change(layout.state, json.dumps(state, indent=2) + "\n", 0o600))


def _join_group(uid, gid, report):
    """Put the gateway's user in the socket group (exec on the gateway connects as them)."""
    if uid == 0:
        return ""
    user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
    if gid in os.getgrouplist(user, pwd.getpwuid(uid).pw_gid):
        return ""
    r = subprocess.run(["usermod", "-a", "-G", group, user], capture_output=True, text=True)
    if r.returncode != 0:
        raise host.InstallError("cannot add %s to group %s: %s" % (user, group, r.stderr.strip()))
    report.append("added %s to group %s (a running gateway needs a restart to have it)" % (user, group))
    return "%s:%s" % (user, group)


def _record(layout, t, earlier, added):
    """What uninstall needs: each edit (no token in it) and the value each set replaced."""
    ops = [[op, path, value if op == "append" else None] for op, path, value in t.ops]
    ops += [op for op in earlier.get("ops", []) if op not in ops]
    created = earlier.get("created") or t.created
    state = {"home": t.home, "workspace": t.workspace, "sandbox": t.sandbox, "config": t.config,
             "env_file": t.env_file, "skill_dir": t.skill_dir, "client": t.client, "ops": ops,
             "created": created + [c for c in t.created if c not in created],
             "previous": dict(t.before, **earlier.get("previous", {})), "added_to_group": added}
    host.write(host.Change(_state_path(layout), json.dumps(state, indent=2) + "\n", 0o600))


def follow_token(root):
    """After --rotate-token: the new token where the old one was written; report lines."""
    state = _load(_state_path(host.Layout(host.Options(root=root))))
    if not state:
        return []
    report, _ = install(Options(root=root, home=state["home"], workspace=state["workspace"],
                                sandbox=state["sandbox"]))
    return [line for line in report if line.startswith("wrote")]


def uninstall(root):
    """Take hostlink out of the recorded OpenClaw setup, giving back what it replaced; the
    config last, so a config that no longer parses leaves only itself behind."""
    path = _state_path(host.Layout(host.Options(root=root)))
    state = _load(path)
    if not state:
        return []
    report = []
    if state.get("added_to_group"):
        user, group = state["added_to_group"].split(":")
        subprocess.run(["gpasswd", "-d", user, group], capture_output=True)
        report.append("removed %s from group %s" % (user, group))
    uid, gid = owned.owner(state["home"])
    report.append(_strip_env(uid, gid, state["env_file"]))
    skill = state["skill_dir"]
    owned.remove_as(*owned.owner(skill), [state["client"], os.path.dirname(state["client"]),
                                          os.path.join(skill, "SKILL.md"), skill])
    report.append("removed the skill %s" % skill)
    doc = read_config(state["config"])
    for op, key, item in state["ops"]:
        previous = state["previous"].get(".".join(key))
        if op == "append":
            doc.delete(key, item)
        elif previous is not None:
            doc.set(key, previous)
        else:
            doc.delete(key)
    for key in sorted(state.get("created", []), key=len, reverse=True):
        if doc.get(key) in ({}, []):  # made by the install, left empty by the lines above
            doc.delete(key)
    owned.write_as(uid, gid, [host.Change(state["config"], doc.text, _mode(state["config"]))])
    report.append("removed hostlink from %s" % state["config"])
    os.unlink(path)
    return report


def _mode(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o600


def _strip_env(uid, gid, path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [l for l in f.read().splitlines()
                     if l.split("=", 1)[0].strip() not in ("HOSTLINK_SOCKET", "HOSTLINK_TOKEN")]
    except FileNotFoundError:
        return "%s is gone already" % path
    if any(l.strip() for l in lines):
        owned.write_as(uid, gid, [host.Change(path, "\n".join(lines) + "\n", 0o600)])
        return "removed HOSTLINK_* from %s" % path
    owned.remove_as(uid, gid, [path])
    return "removed %s" % path
