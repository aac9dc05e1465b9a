"""What ``hostlink-install openclaw`` changes, planned without writing: one OpenClaw user's
files (Target), the edits to their openclaw.json, and OpenClaw's own verdict on the result.

What OpenClaw needs, as found running it (references/setup.md, OpenClaw): the skill folder in
``<workspace>/skills/hostlink`` with the client beside SKILL.md (sandboxes get a copy of it); the
client's folder on ``tools.exec.pathPrepend``, for exec does not search skill folders; the token
in ``~/.openclaw/.env``, which the gateway reads and which gates the skill. For sandboxes:
``sandbox.docker.binds`` with a socket directory outside /run (OpenClaw refuses bind sources there:
the daemon's ``extra_socket`` listens in SANDBOX_SOCKET_DIR), ``sandbox.docker.user`` with the
socket's gid as primary group (there is no groupAdd) and ``sandbox.docker.env``. openclaw.json is
edited as text (json5edit: OpenClaw's ``config set`` would drop the user's comments), then
checked by ``openclaw config validate`` where that runs.
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile

from .. import zipapp
from ..daemon import config as hl_config
from . import host, json5edit, owned
from .json5read import Json5Error
from .render import bundle_file

SANDBOX_SOCKET_DIR = "/var/lib/hostlink/socket"  # not under /run: OpenClaw refuses to mount that
CONTAINER_SOCKET = host.CONTAINER_SOCKET_DIR + "/hostlink.sock"
SANDBOX = ["agents", "defaults", "sandbox"]
DOCKER = SANDBOX + ["docker"]
PATH_PREPEND = ["tools", "exec", "pathPrepend"]
SANDBOX_UID = "1000"  # when the config names no sandbox user: OpenClaw's own example uses it


class Options:
    """What the user asked for (the typer command fills it); None: read it from openclaw.json."""

    def __init__(self, root="/", home=None, workspace=None, sandbox=None, dry_run=False):
        self.root = os.path.abspath(root)
        self.home = home
        self.workspace = workspace
        self.sandbox = sandbox
        self.dry_run = dry_run


def default_home():
    """The home of the user who ran sudo, else ours: the one holding ~/.openclaw."""
    sudo = os.environ.get("SUDO_USER")
    if sudo and sudo != "root":
        try:
            return pwd.getpwnam(sudo).pw_dir
        except KeyError:
            pass
    return os.path.expanduser("~")


def read_config(path):
    """openclaw.json as a Document (an empty one when the file is not there yet)."""
    try:
        return json5edit.load(path)
    except Json5Error as exc:
        raise host.InstallError("not JSON5 that OpenClaw reads: %s" % exc) from None


class Target:
    """One OpenClaw user's files, each where openclaw.json (or the options) put it."""

    def __init__(self, opts):
        self.home = os.path.abspath(opts.home or default_home())
        if not os.path.isdir(self.home):
            raise host.InstallError("--home %s is not a directory" % self.home)
        self.uid, self.gid = owned.owner(self.home)
        state_dir = os.path.join(self.home, ".openclaw")
        self.config = os.path.join(state_dir, "openclaw.json")
        self.env_file = os.path.join(state_dir, ".env")
        self.doc = read_config(self.config)
        ws = opts.workspace or self.doc.get(["agents", "defaults", "workspace"]) or \
            os.path.join(state_dir, "workspace")
        self.workspace = os.path.abspath(os.path.join(self.home, ws[2:]) if ws.startswith("~/") else ws)
        self.skill_dir = os.path.join(self.workspace, "skills", "hostlink")
        self.client = os.path.join(self.skill_dir, "bin", "hostlink")
        mode = self.doc.get(SANDBOX + ["mode"], "off")
        self.sandbox = opts.sandbox if opts.sandbox is not None else mode != "off"
        workdir = self.doc.get(DOCKER + ["workdir"], "/workspace")
        self.sandbox_bin = workdir.rstrip("/") + "/skills/hostlink/bin"


def host_facts(layout):
    """(token, socket, socket gid) of the host install; InstallError when there is none."""
    try:
        with open(layout.conf, encoding="utf-8") as f:
            cfg = hl_config.parse(f.read(), layout.conf)
        return cfg.auth_token, cfg.socket, cfg.socket_gid
    except OSError:
        raise host.InstallError("no hostlink install at %s: run hostlink-install host first"
                                % layout.conf) from None
    except (hl_config.ConfigError, KeyError) as exc:
        raise host.InstallError(str(exc)) from None


def edits(t, token, gid, sandbox_socket_dir):
    """The changes to openclaw.json: [(op, path, value)], op "set" or "append"."""
    ops = [("append", PATH_PREPEND, os.path.join(t.skill_dir, "bin"))]
    if t.sandbox:
        uid = (t.doc.get(DOCKER + ["user"]) or SANDBOX_UID).split(":")[0]
        ops += [("append", PATH_PREPEND, t.sandbox_bin),
                ("append", DOCKER + ["binds"], "%s:%s:rw" % (sandbox_socket_dir, host.CONTAINER_SOCKET_DIR)),
                ("set", DOCKER + ["dangerouslyAllowExternalBindSources"], True),
                ("set", DOCKER + ["user"], "%s:%d" % (uid, gid)),
                ("set", DOCKER + ["env", "HOSTLINK_SOCKET"], CONTAINER_SOCKET),
                ("set", DOCKER + ["env", "HOSTLINK_TOKEN"], token)]
    return ops


def validate(t, text):
    """What OpenClaw says of ``text`` as t's config: a report line, or InstallError when it
    refuses it. Run as t's user, on a copy: the real file is only written once it passed."""
    cli = shutil.which("openclaw")
    if not cli:
        return "openclaw is not on PATH, so the edit was not checked: run openclaw config validate"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "openclaw.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(text)
        for p in (tmp, path):
            os.chown(p, t.uid, t.gid)
        env = dict(os.environ, HOME=t.home, OPENCLAW_CONFIG_PATH=path)
        drop = {} if t.uid == os.geteuid() else {"user": t.uid, "group": t.gid, "extra_groups": []}
        r = subprocess.run([cli, "config", "validate", "--json"], env=env, capture_output=True,
                           text=True, timeout=120, **drop)
    try:
        verdict = json.loads(r.stdout)
    except ValueError:
        verdict = {"valid": False, "issues": [{"path": "", "message": (r.stderr or r.stdout).strip()}]}
    if not verdict.get("valid"):
        issues = "; ".join("%s: %s" % (i.get("path"), i.get("message")) for i in verdict.get("issues", []))
        raise host.InstallError("OpenClaw refuses the edited %s (%s); nothing was written"
                                % (t.config, issues or "no reason given"))
    return "openclaw config validate accepts %s" % t.config


def _mode(path, default):
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return default


def plan(opts, layout, token, gid, socket):
    """(Target, Changes written as its user, Changes written as root); reads, never writes. The
    Target keeps its edits (``ops``), the values they replaced (``before``) and the objects and
    lists they make (``created``, deepest first)."""
    t = Target(opts)
    sandbox_socket_dir = os.path.join(layout.root, SANDBOX_SOCKET_DIR.lstrip("/"))
    t.ops = edits(t, token, gid, sandbox_socket_dir)
    t.before = {".".join(path): t.doc.get(path) for op, path, _ in t.ops if op == "set"}
    containers = {tuple(path[:n]) for op, path, _ in t.ops for n in range(1, len(path) + (op == "append"))}
    t.created = sorted([list(c) for c in containers if t.doc.get(list(c)) is None], key=len, reverse=True)
    for op, path, value in t.ops:
        getattr(t.doc, op)(path, value)
    with open(bundle_file("SKILL.md"), "rb") as f:
        skill = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        with open(zipapp.build(os.path.join(tmp, "hostlink")), "rb") as f:
            client = f.read()
    env = {"HOSTLINK_SOCKET": socket, "HOSTLINK_TOKEN": token}
    user = [host.Change(t.config, t.doc.text, _mode(t.config, 0o600)),
            host.Change(t.env_file, host.env_file(t.env_file, env), 0o600),
            host.Change(os.path.join(t.skill_dir, "SKILL.md"), skill, 0o644),
            host.Change(t.client, client, 0o755)]
    root = []
    if t.sandbox:
        root.append(host.Change(layout.conf, _with_extra_socket(layout.conf, sandbox_socket_dir), 0o600))
    return t, user, root


def _with_extra_socket(conf, folder):
    """The text of hostlink.conf with extra_socket in ``folder``."""
    with open(conf, encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines() if l.split("=", 1)[0].strip() != "extra_socket"]
    at = next((i + 1 for i, l in enumerate(lines) if l.startswith("socket_group")),  # as host writes it
              next((i for i, l in enumerate(lines) if l.strip().startswith("[")), len(lines)))
    lines.insert(at, "extra_socket = %s" % os.path.join(folder, "hostlink.sock"))
    return "\n".join(lines) + "\n"
