"""Approvals: a request that hits an ``ask`` rule waits for a person on the host.

The person answers through the daemon's admin socket (admin.py), usually with
``hostlink-approve``. An approval binds exactly what the person saw: client, command or argv, the
resolved executable, working directory and environment; the directory and executable are held
open (policy.Target) from the check until the command starts, so re-pointing a symlink while the
request waits changes nothing. Every text shown to the person has its control characters made
visible (wire/visible.py).

``--always`` stores the exact request, with the identity of what it runs, as a record in
``policy_dir/CLIENT.json`` (a JSON document rewritten atomically, never text joined from a
request). It is refused for shell strings, a bare interpreter, and any request whose executable,
arguments that name files, or their directories someone other than root could change; a record
matches only while its executable is the same file (device and inode) and, for a script or the
files an interpreter is given, the same content (SHA-256).
"""

import asyncio
import hashlib
import json
import logging
import os
import shlex
import subprocess
import tempfile
import time

from ..wire.visible import visible
from .spawn import root_only

log = logging.getLogger("hostlinkd")
INTERPRETERS = ("sh", "bash", "dash", "zsh", "ksh", "fish", "python", "python3", "perl", "ruby",
                "node", "env", "sudo", "su", "busybox")
_HASH_LIMIT = 16 << 20  # an interpreter's input larger than this is not eligible for --always


def signature(request, target):
    """What an approval binds: the exact request as the person saw it (the directory as held,
    and the executable as resolved)."""
    sig = {"cwd": target.real_cwd, "env": sorted([list(p) for p in request.env])}
    if request.argv is not None:
        sig["argv"] = list(request.argv)
        sig["exe"] = target.exe.path if target.exe else None
    else:
        sig["command"] = request.command
    return sig


def describe(sig):
    """The request as one line for a person, control characters made visible."""
    if "command" in sig:
        return visible(sig["command"])
    text = " ".join(shlex.quote(a) for a in sig["argv"])
    exe = sig.get("exe")
    if exe and exe != sig["argv"][0]:
        text += "  (runs %s)" % exe
    return visible(text)


def _is_interpreter(path):
    name = os.path.basename(path)
    return name in INTERPRETERS or name.startswith(("python", "perl", "ruby", "node", "php", "lua"))


def _file_args(sig):
    """The arguments that name existing files or directories (absolute, or below the cwd),
    including the value of --opt=VALUE."""
    out = []
    for arg in sig["argv"][1:]:
        for text in {arg, arg.partition("=")[2]}:
            if not text:
                continue
            path = os.path.join(sig["cwd"], text)
            if os.path.exists(path):
                out.append(os.path.realpath(path))
    return out


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def identity(sig, target):
    """The record --always stores beside the request: the executable's path, device and inode,
    and the SHA-256 of a script executable and of the files an interpreter is given."""
    exe = target.exe
    rec = {"exe": exe.identity(), "files": {}}
    hashed = [exe.path] if exe.script else []
    if exe.script or _is_interpreter(exe.path):
        hashed += [p for p in _file_args(sig) if os.path.isfile(p)]
    for path in hashed:
        if not root_only(path):
            raise ValueError("%s can be changed by someone other than root" % path)
        if os.path.getsize(path) > _HASH_LIMIT:
            raise ValueError("%s is too large to bind by content" % path)
        rec["files"][path] = _sha256(path)
    return rec


def always_refusal(sig, target):
    """Why ``sig`` may not become an "always" rule, or "" when it may."""
    argv = sig.get("argv")
    if argv is None:
        return ("a shell string runs whatever its text and the files it names say; approve it "
                "once instead, or ask for an argv request")
    exe = target.exe
    if exe is None:
        return "%s is not an executable on the host" % argv[0]
    if len(argv) == 1 and _is_interpreter(exe.path):
        return "%s alone would allow anything it is fed" % argv[0]
    if not root_only(exe.path, os.stat("/proc/self/fd/%d" % exe.fd) if exe.fd >= 0 else None):
        return ("the executable %s (or a directory above it) can be changed by someone other "
                "than root, so an exact rule would not stay exact" % exe.path)
    for path in _file_args(sig):
        if not root_only(path):
            return ("%s (or a directory above it) can be changed by someone other than root, so "
                    "an exact rule would not stay exact" % path)
    return ""


def approved_always(cfg, client, request, target):
    """Whether an --always record of ``client`` matches ``request`` and still names what runs:
    the same executable (device, inode) and the same content of what was hashed."""
    records = cfg.always.get(client.name)
    if not records or request.argv is None or target.exe is None:
        return False
    sig = signature(request, target)
    for rec in records:
        if rec.get("request") != sig:
            continue
        exe = rec.get("exe") or {}
        if (exe.get("path"), exe.get("dev"), exe.get("ino")) != (
                target.exe.path, target.exe.dev, target.exe.ino):
            continue
        try:
            if all(_sha256(path) == digest for path, digest in rec.get("files", {}).items()):
                return True
        except OSError:
            continue
    return False


def store(policy_dir, client, record):
    """Add ``record`` to policy_dir/CLIENT.json: read, append, write a temporary file (0600),
    fsync, rename. Returns the file's path."""
    os.makedirs(policy_dir, mode=0o700, exist_ok=True)
    path = os.path.join(policy_dir, "%s.json" % client)
    doc = {"client": client, "always": []}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        pass
    doc["always"].append(record)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % client, dir=policy_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class Pending:
    def __init__(self, ident, client, sig, loop, target=None):
        self.id = ident
        self.client = client
        self.sig = sig
        self.target = target  # the held directory and executable (policy.Target)
        self.created = time.time()
        self.decision = loop.create_future()

    def public(self):
        return {"id": self.id, "client": self.client, "text": describe(self.sig),
                "cwd": visible(self.sig["cwd"]),
                "env": [[visible(n), visible(v)] for n, v in self.sig["env"]],
                "created": int(self.created)}


class Approvals:
    """The requests waiting for a person, and the decisions the admin socket brings."""

    def __init__(self, state):
        self.state = state  # for the current configuration, the loop, the audit log, the reaper
        self.pending = {}
        self.watchers = set()

    def stop(self):
        """Deny what still waits: the daemon is going."""
        for p in self.pending.values():
            if not p.decision.done():
                p.decision.set_result((False, False, "hostlinkd is stopping"))

    async def ask(self, client, sig, timeout_ms, announce, target=None):
        """Wait for a decision; returns (approved, reason). ``announce(id)`` tells the client."""
        ticket = self.state.limits.approval(client.name)  # Busy past max_pending_approvals
        ident = os.urandom(4).hex()
        entry = Pending(ident, client.name, sig, self.state.loop, target)
        try:
            self.pending[ident] = entry
            self.state.audit.write(event="approval", result="waiting", id=ident,
                                   client=client.name, request=sig)
            self._notify(entry)
            for q in list(self.watchers):
                q.put_nowait(entry.public())
            await announce(ident)
            approved, always, reason = await asyncio.wait_for(entry.decision, timeout_ms / 1000)
        except asyncio.TimeoutError:
            approved, reason = False, "no decision within %d ms (approval_timeout_ms)" % timeout_ms
        finally:
            self.pending.pop(ident, None)
            ticket.release()
        self.state.audit.write(event="approval", result="approved" if approved else "denied",
                               id=ident, client=client.name, reason=reason)
        return approved, reason

    def _notify(self, entry):
        cmd = self.state.cfg.approval_notify
        if not cmd:
            return
        env = dict(os.environ, HOSTLINK_APPROVAL_ID=entry.id, HOSTLINK_CLIENT=entry.client,
                   HOSTLINK_REQUEST=describe(entry.sig), HOSTLINK_CWD=visible(entry.sig["cwd"]),
                   HOSTLINK_NODE=self.state.cfg.node)
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            self.state.reaper.watch(proc, lambda status: None)
        except OSError as exc:
            log.error("approval_notify failed: %s", exc)

    def decide(self, req, approve, uid):
        """Answer the pending request ``req["id"]``; the admin socket's reply."""
        entry = self.pending.get(str(req.get("id", "")))
        if entry is None or entry.decision.done():
            return {"ok": False, "error": "no pending request %s" % req.get("id")}
        out = {"ok": True, "id": entry.id}
        if approve and req.get("always"):
            why = always_refusal(entry.sig, entry.target) if entry.target else "no target"
            record = None
            if not why:
                try:
                    record = dict(identity(entry.sig, entry.target), request=entry.sig)
                except (OSError, ValueError) as exc:
                    why = str(exc)
            if why:
                return {"ok": False, "error": "not stored as an always rule: %s; approve once "
                                              "instead" % visible(why)}
            out["rule_file"] = store(self.state.cfg.policy_dir, entry.client, record)
            out["rule"] = visible(json.dumps(record, sort_keys=True))
            self.state.cfg.always.setdefault(entry.client, []).append(record)
            self.state.audit.write(event="policy", result="always_rule", client=entry.client,
                                   file=out["rule_file"], rule=record, by_uid=uid)
        reason = str(req.get("reason") or ("approved" if approve else "denied by a person on the host"))
        entry.decision.set_result((approve, bool(req.get("always")), reason))
        return out
