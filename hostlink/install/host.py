"""``hostlink-install host`` and ``uninstall``: plan the files, show or write them, start the daemon.

A plan is a list of Change objects computed without touching anything, so ``--dry-run`` is the
plan shown as diffs, and a second run finds every file unchanged. ``--root`` relocates every
path (as DESTDIR does), configuration values included, so a relocated install also runs.
"""

import difflib
import grp
import json
import os
import secrets
import signal
import socket as _socket
import subprocess
import sys
import time

from .. import zipapp
from ..daemon import config as hl_config
from . import compose, owned, runas, takeover, takeover_apply
from .render import render

CONTAINER_SOCKET_DIR = "/run/hostlink"
ENV_KEYS = ("HOSTLINK_SOCKET", "HOSTLINK_TOKEN", "HOSTLINK_PATH_MAP")


class InstallError(Exception):
    """The install cannot go on; the message says why and what to do."""


class Options:
    """What the user asked for (the typer command fills it)."""

    def __init__(self, root="/", workspace=None, service=None, dry_run=False, no_start=False,
                 rotate_token=False, openclaw_config=None, group="hostlink", socket_dir=None,
                 compose_file=None, shell="/bin/bash", node_name="", tcp=None, workspace_mount=None,
                 run_as=None):
        self.root = os.path.abspath(root)
        self.workspace = os.path.abspath(workspace) if workspace else None
        self.service = service
        self.dry_run = dry_run
        self.no_start = no_start
        self.rotate_token = rotate_token
        self.openclaw_config = openclaw_config
        self.group = group
        self.socket_dir = socket_dir
        self.compose_file = compose_file
        self.shell = shell
        self.node_name = node_name
        self.tcp = tcp
        self.workspace_mount = workspace_mount
        self.run_as = run_as  # None: runas.choose picks (never root unless asked)


class Layout:
    """Every path the install touches, under the root."""

    def __init__(self, opts):
        r = lambda p: os.path.join(opts.root, p.lstrip("/"))
        self.root = opts.root
        self.etc = r("/etc/hostlink")
        self.conf = r("/etc/hostlink/hostlink.conf")
        self.compose_dir = r("/etc/hostlink/compose")
        self.override = os.path.join(self.compose_dir, "docker-compose.hostlink.yml")
        self.unit = r("/etc/systemd/system/hostlinkd.service")
        self.tmpfiles = r("/etc/tmpfiles.d/hostlink.conf")
        self.socket_dir = os.path.abspath(opts.socket_dir) if opts.socket_dir else r("/run/hostlink")
        self.socket = os.path.join(self.socket_dir, "hostlink.sock")
        self.pid_file = r("/run/hostlink-install/hostlinkd.pid")
        self.log_dir = r("/var/log/hostlink")
        self.audit_log = os.path.join(self.log_dir, "audit.log")
        self.admin_socket = r("/run/hostlink-admin/admin.sock")
        self.job_spool_dir = r("/var/lib/hostlink/jobs")
        self.tls_cert = r("/etc/hostlink/hostlink.crt")
        self.tls_key = r("/etc/hostlink/hostlink.key")
        self.daemon_log = os.path.join(self.log_dir, "hostlinkd.log")
        self.state = r("/var/lib/hostlink/installed.json")
        self.client = r("/var/lib/hostlink/client/hostlink")  # what the override mounts
        self.token_file = r("/etc/hostlink/compose/secrets/hostlink_token")  # and the token, as a file


class Change:
    """One file to write: its path, new bytes, mode, and the bytes there now (None: absent)."""

    def __init__(self, path, content, mode):
        self.path = path
        self.content = content if isinstance(content, bytes) else content.encode()
        self.mode = mode
        try:
            with open(path, "rb") as f:
                self.old = f.read()
        except OSError:
            self.old = None
        self.old_mode = os.stat(path).st_mode & 0o7777 if self.old is not None else None

    @property
    def changed(self):
        return self.old != self.content or self.old_mode != self.mode

    def diff(self):
        """A unified diff of the change (tokens shown: run --dry-run where only you can see it)."""
        if self.content is None or b"\0" in self.content:
            return "%s: binary file, %d bytes\n" % (self.path, len(self.content or b""))
        old = (self.old or b"").decode("utf-8", "replace").splitlines(True)
        new = self.content.decode("utf-8", "replace").splitlines(True)
        text = "".join(difflib.unified_diff(old, new, "a" + self.path, "b" + self.path))
        if not text and self.old_mode != self.mode:
            text = "%s: mode %s -> %04o\n" % (self.path, "absent" if self.old_mode is None
                                              else "%04o" % self.old_mode, self.mode)
        return text


def existing_token_in(conf_path, key="auth_token"):
    """The auth_token (or ``key``) of the hostlink.conf an earlier run wrote, or ""."""
    try:
        with open(conf_path, encoding="utf-8") as f:
            return getattr(hl_config.parse(f.read(), conf_path), key)
    except (OSError, hl_config.ConfigError):
        return ""


def group_gid(name, create):
    """The gid of group ``name``; creates it (groupadd --system) when asked and missing."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if not create:
            return -1
    r = subprocess.run(["groupadd", "--system", name], capture_output=True, text=True)
    if r.returncode != 0:
        raise InstallError("cannot create group %s: %s" % (name, r.stderr.strip()))
    return grp.getgrnam(name).gr_gid


_INSTALLATION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def daemon_command():
    """How to start hostlinkd from this installation."""
    return [sys.executable, "-m", "hostlink.daemon"]


def plan(opts, layout, token, gid):
    """Every Change for ``opts``; reads files, writes nothing."""
    conf = render("installer", "hostlink.conf.j2", node_name=opts.node_name or _socket.gethostname(),
                  token=token, shell=opts.shell, socket=layout.socket, group_gid=max(gid, 0),
                  max_concurrent=16, default_timeout_ms=30000, max_timeout_ms=86400000,
                  audit_log=layout.audit_log, log_target="stderr", namespace_pid=0,
                  tcp=_tcp(opts.tcp), tls_cert=layout.tls_cert, tls_key=layout.tls_key,
                  admin_socket=layout.admin_socket,
                  job_spool_dir=layout.job_spool_dir if layout.root not in ("", "/") else "",
                  extra_socket=existing_token_in(layout.conf, "extra_socket"),  # hostlink-install openclaw's
                  run_as=opts.run_as)
    changes = [Change(layout.conf, conf, 0o600)]
    unit = render("installer", "hostlinkd.service.j2", exec_start=" ".join(daemon_command()),
                  conf=layout.conf, runtime_dir=os.path.basename(layout.socket_dir),
                  setup_doc="/usr/share/doc/hostlink/setup.md")
    changes.append(Change(layout.unit, unit, 0o644))
    changes.append(Change(layout.tmpfiles, render("installer", "tmpfiles.conf.j2",
                                                  socket_dir=layout.socket_dir, group=opts.group), 0o644))
    changes.append(Change(layout.override, compose.override(opts, layout, gid), 0o644))
    changes.append(Change(layout.token_file, token + "\n", 0o440))  # group: the socket's (install)
    changes.append(Change(layout.client, _client_bytes(), 0o755))
    env = {"HOSTLINK_SOCKET": container_socket(layout), "HOSTLINK_TOKEN": token}
    if opts.workspace and opts.workspace_mount:
        env["HOSTLINK_PATH_MAP"] = "%s=%s" % (opts.workspace_mount.rstrip("/"), opts.workspace)
    if opts.workspace:
        client = os.path.join(opts.workspace, "bin", "hostlink")
        changes.append(Change(client, _client_bytes(), 0o755))
        if opts.openclaw_config:
            changes.append(Change(opts.openclaw_config, openclaw_json(opts.openclaw_config, env),
                                  0o600))
        else:
            path = os.path.join(opts.workspace, ".env")
            changes.append(Change(path, env_file(path, env), 0o600))
    return changes


def container_socket(layout):
    """The socket's path in a container, where its directory is mounted."""
    return CONTAINER_SOCKET_DIR + "/" + os.path.basename(layout.socket)


def _tcp(spec):
    """(address, port) from ADDR:PORT, or None."""
    if not spec:
        return None
    addr, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not addr:
        raise InstallError("--tcp wants ADDR:PORT, e.g. 10.0.0.1:9876, not %r" % spec)
    if addr.strip("[]") in ("0.0.0.0", "::"):
        raise InstallError("--tcp %s listens on every network; give the WireGuard or LAN address" % spec)
    return addr.strip("[]"), int(port)


def _client_bytes():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = zipapp.build(os.path.join(tmp, "hostlink"))
        with open(path, "rb") as f:
            return f.read()


def env_file(path, env):
    """The text of a .env file with ``env`` set, every other line kept."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out, done = [], set()
    for line in lines:
        key = line.split("=", 1)[0].strip()
        if key.startswith("export "):
            key = key[7:].strip()
        if key in env:
            if key not in done:
                out.append("%s=%s" % (key, env[key]))
                done.add(key)
            continue
        out.append(line)
    out += ["%s=%s" % (k, v) for k, v in env.items() if k not in done]
    return "\n".join(out) + "\n"


def openclaw_json(path, env):
    """openclaw.json (JSON5) with ``env`` in env.vars, every other key and comment kept."""
    doc = _openclaw_doc(path)
    for key, value in env.items():
        doc.set(["env", "vars", key], value)
    return doc.text


def write(change):
    """Write one change atomically, with its mode from the start."""
    os.makedirs(os.path.dirname(change.path), exist_ok=True)
    tmp = change.path + ".hostlink-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, change.mode)
    with os.fdopen(fd, "wb") as f:
        f.write(change.content)
    os.chmod(tmp, change.mode)
    os.replace(tmp, change.path)


def _daemon_pid(layout):
    try:
        with open(layout.pid_file) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"hostlink" not in f.read():
                return 0
        return pid
    except (OSError, ValueError):
        return 0


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def start_daemon(layout, conf_changed):
    """Start hostlinkd (or reload it when its configuration changed); returns what happened."""
    if layout.root == "/" and systemd_running():
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "enable", "--now", "hostlinkd.service"], check=True)
        if conf_changed:
            subprocess.run(["systemctl", "reload", "hostlinkd.service"], check=True)
        return "systemd: hostlinkd.service enabled and running"
    pid = _daemon_pid(layout)
    if pid:
        if conf_changed:
            os.kill(pid, signal.SIGHUP)
            return "hostlinkd (pid %d) reloaded its configuration" % pid
        return "hostlinkd (pid %d) already running" % pid
    os.makedirs(os.path.dirname(layout.pid_file), exist_ok=True)
    os.makedirs(layout.log_dir, mode=0o700, exist_ok=True)
    log = open(layout.daemon_log, "ab")
    proc = subprocess.Popen(daemon_command() + ["--config", layout.conf, "--pid-file", layout.pid_file],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            cwd="/",  # -m puts the working directory first on a root daemon's path
                            env=dict(os.environ, PYTHONPATH=_INSTALLATION))  # and this code, not another
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InstallError("hostlinkd exited at start (code %d); see %s"
                               % (proc.returncode, layout.daemon_log))
        if os.path.exists(layout.socket) and _daemon_pid(layout):
            return ("no systemd here: started hostlinkd in the background (pid %d, log %s, "
                    "pid file %s)" % (proc.pid, layout.daemon_log, layout.pid_file))
        time.sleep(0.05)
    raise InstallError("hostlinkd did not create %s within 10 s; see %s" % (layout.socket, layout.daemon_log))


def stop_daemon(layout):
    """Stop a hostlinkd that this installer started; returns what happened."""
    if layout.root == "/" and systemd_running():
        subprocess.run(["systemctl", "disable", "--now", "hostlinkd.service"], check=False)
        return "systemd: hostlinkd.service stopped and disabled"
    pid = _daemon_pid(layout)
    if not pid:
        return "hostlinkd was not running"
    os.kill(pid, signal.SIGTERM)
    for _ in range(300):
        if not os.path.exists("/proc/%d" % pid) or _zombie(pid):
            break
        time.sleep(0.05)
    return "stopped hostlinkd (pid %d)" % pid


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def install(opts):
    """Run ``hostlink-install host``; returns (report lines, changes)."""
    try:  # the compose file given or in the current directory, and its service
        opts.compose_file = compose.find_file(opts.compose_file, os.getcwd())
        opts.service = compose.pick_service(opts.compose_file, opts.service)
        opts.run_as, why = runas.choose(opts.run_as, opts.workspace,
                                        existing_token_in(Layout(opts).conf, "run_as_user"))
    except (compose.ComposeError, runas.RunAsError) as exc:
        raise InstallError(str(exc)) from None
    layout = Layout(opts)
    try:  # a first-hostlink install here: keep what it ran with
        tk = takeover_apply.prepare(layout, opts, _state(layout).get("takeover"))
    except takeover.TakeoverError as exc:
        raise InstallError(str(exc)) from None
    token = "" if opts.rotate_token else (tk.token if tk else existing_token_in(layout.conf))
    token = token or secrets.token_hex(32)
    gid = group_gid(opts.group, create=not opts.dry_run)
    changes = plan(opts, layout, token, gid)
    if tk:
        conf = Change(layout.conf, takeover.render_conf(tk, token), 0o600)
        changes = takeover_apply.changes(tk, layout, changes, conf)
    report = ["commands run on this host as %s (%s)" % (opts.run_as, why)]
    if opts.dry_run:
        return report + ["dry run: nothing was changed"] + (tk.lines if tk else []), changes
    report += list(tk.lines) if tk else []
    if tk and opts.rotate_token:
        report.append("--rotate-token: a new token replaces its token; give it to its clients")
    if tk:
        report += takeover_apply.backup(tk.record)
    try:
        report += runas.ensure(opts.run_as, gid)
    except (runas.RunAsError, subprocess.CalledProcessError) as exc:
        raise InstallError(str(exc)) from None
    created = _missing_dirs([c.path for c in changes] + [layout.pid_file, layout.audit_log,
                                                         layout.state, layout.socket, layout.admin_socket])
    theirs = [c for c in changes if opts.workspace and c.path.startswith(opts.workspace + os.sep)]
    owned.write_as(*owned.owner(opts.workspace or "/"), theirs)  # the workspace's owner's files
    for ch in changes:
        if ch.changed and ch.path == layout.token_file:
            compose.write_token(ch, gid)
        elif ch.changed and ch not in theirs:
            write(ch)
        report.append("%s %s" % ("wrote" if ch.changed else "unchanged", ch.path))
    if opts.tcp and not os.path.exists(layout.tls_cert):
        from ..daemon import tls
        tls.generate(layout.tls_cert, layout.tls_key, opts.node_name or _socket.gethostname())
        report.append("made a TLS key and certificate: %s (show-target prints its fingerprint)"
                      % layout.tls_cert)
    if opts.workspace:
        link = os.path.join(opts.workspace, "bin", "hostlink-cli")
        if not os.path.islink(link):
            os.symlink("hostlink", link)
            os.lchown(link, *owned.owner(opts.workspace))
            report.append("linked %s -> hostlink" % link)
    if not (tk and os.path.isdir(layout.socket_dir)):  # never re-mode a directory it chose
        _make_socket_dir(layout, gid)
    os.makedirs(layout.log_dir, mode=0o700, exist_ok=True)
    _record(layout, opts, changes, created, tk.record if tk else None)
    if tk and opts.no_start:
        report.append("--no-start: the first hostlink's daemon still runs; stop it before hostlinkd")
    elif tk:
        report += takeover_apply.stop(tk.record, layout.root == "/" and systemd_running())
    if not opts.no_start:
        report.append(start_daemon(layout, changes[0].changed))
    return report, changes


def _make_socket_dir(layout, gid):
    os.makedirs(layout.socket_dir, exist_ok=True)
    os.chmod(layout.socket_dir, 0o750)
    if gid >= 0:
        os.chown(layout.socket_dir, 0, gid)


def _missing_dirs(paths):
    """Directories above ``paths`` that do not exist yet (so uninstall can remove just those)."""
    out = set()
    for path in paths:
        d = os.path.dirname(path)
        while d and d != "/" and not os.path.exists(d):
            out.add(d)
            d = os.path.dirname(d)
    return out


def _state(layout):
    try:
        with open(layout.state, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _record(layout, opts, changes, created, took_over=None):
    shared = (os.path.join(opts.workspace or "", ".env"), opts.openclaw_config)
    paths = [c.path for c in changes if c.path not in shared] + [layout.daemon_log]
    paths += [p for p in (layout.tls_cert, layout.tls_key) if os.path.exists(p)]
    if opts.workspace:
        paths.append(os.path.join(opts.workspace, "bin", "hostlink-cli"))
    try:
        with open(layout.state, encoding="utf-8") as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        earlier = {}
    created = created | set(earlier.get("dirs", []))
    state = {"files": sorted(set(paths)), "dirs": sorted(created), "workspace": opts.workspace,
             # a later run without --openclaw-config must not forget where the token went
             "openclaw_config": opts.openclaw_config or earlier.get("openclaw_config"),
             "socket_dir": layout.socket_dir}
    if took_over:
        state["takeover"] = took_over
    write(Change(layout.state, json.dumps(state, indent=2) + "\n", 0o600))


def uninstall(opts):
    """Remove what install wrote (the audit log stays); safe to run twice."""
    layout = Layout(opts)
    report = [stop_daemon(layout)]
    try:
        with open(layout.state, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        report.append("nothing recorded as installed under %s" % layout.root)
        return report
    env_path = os.path.join(state["workspace"], ".env") if state.get("workspace") else None
    for path in state["files"]:
        if path in (env_path, state.get("openclaw_config")):
            continue
        if os.path.lexists(path):
            os.unlink(path)
            report.append("removed %s" % path)
    if env_path and os.path.exists(env_path):
        report.append(_strip_env(env_path))
    if state.get("openclaw_config") and os.path.exists(state["openclaw_config"]):
        _strip_openclaw(state["openclaw_config"])
        report.append("removed HOSTLINK_* from %s" % state["openclaw_config"])
    os.unlink(layout.state)
    if state.get("takeover"):
        report += takeover_apply.restore(state["takeover"], layout.root == "/" and systemd_running())
    for d in sorted(state.get("dirs", []), key=len, reverse=True):  # deepest first
        if os.path.isdir(d) and not os.listdir(d):
            os.rmdir(d)
    report.append("kept the audit log %s" % layout.audit_log)
    return report


def _strip_env(path):
    with open(path, encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines() if l.split("=", 1)[0].strip() not in ENV_KEYS]
    if not any(l.strip() for l in lines):
        os.unlink(path)
        return "removed %s" % path
    write(Change(path, "\n".join(lines) + "\n", 0o600))
    return "removed HOSTLINK_* from %s" % path


def _openclaw_doc(path):
    from .json5edit import Json5Error, load
    try:
        return load(path)
    except Json5Error as exc:
        raise InstallError("not JSON5 that OpenClaw reads: %s" % exc) from None


def _strip_openclaw(path):
    doc = _openclaw_doc(path)
    for key in ENV_KEYS:
        doc.delete(["env", "vars", key])
    write(Change(path, doc.text, 0o600))
