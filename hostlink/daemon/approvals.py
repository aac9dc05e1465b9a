"""Approvals: a request that hits an ``ask`` rule waits for a person on the host.

The person answers through the daemon's admin socket (admin.py), usually with
``hostlink-approve``. An approval binds exactly what the person saw: client, command or argv,
working directory and environment. ``--always`` stores that exact request as a rule in a policy
drop-in file (policy_dir), shown to the person; a bare interpreter, or a script that someone other
than root could change, is refused as an "always" rule.
"""

import asyncio
import json
import logging
import os
import shlex
import stat
import subprocess
import time

log = logging.getLogger("hostlinkd")
INTERPRETERS = ("sh", "bash", "dash", "zsh", "ksh", "fish", "python", "python3", "perl", "ruby",
                "node", "env", "sudo", "su", "busybox")


def signature(request, cwd):
    """What an approval binds: the exact request as the person saw it."""
    sig = {"cwd": cwd, "env": sorted([list(p) for p in request.env])}
    if request.argv is not None:
        sig["argv"] = list(request.argv)
    else:
        sig["command"] = request.command
    return sig


def describe(sig):
    text = sig["command"] if "command" in sig else " ".join(shlex.quote(a) for a in sig["argv"])
    return text


def always_refusal(sig):
    """Why ``sig`` may not become an "always" rule, or "" when it may."""
    argv = sig.get("argv")
    if argv is None:
        return ""
    name = os.path.basename(argv[0])
    if len(argv) == 1 and (name in INTERPRETERS or name.startswith("python")):
        return "%s alone would allow anything it is fed" % argv[0]
    for arg in argv[1:]:
        path = arg if arg.startswith("/") else os.path.join(sig["cwd"], arg)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_uid != 0 or st.st_mode & 0o022):
            return ("%s can be changed by someone other than root, so an exact rule would not stay "
                    "exact" % path)
    return ""


class Pending:
    def __init__(self, ident, client, sig, loop):
        self.id = ident
        self.client = client
        self.sig = sig
        self.created = time.time()
        self.decision = loop.create_future()

    def public(self):
        return {"id": self.id, "client": self.client, "text": describe(self.sig),
                "cwd": self.sig["cwd"], "env": self.sig["env"], "created": int(self.created)}


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

    async def ask(self, client, sig, timeout_ms, announce):
        """Wait for a decision; returns (approved, reason). ``announce(id)`` tells the client."""
        ident = os.urandom(4).hex()
        entry = Pending(ident, client.name, sig, self.state.loop)
        self.pending[ident] = entry
        self.state.audit.write(event="approval", result="waiting", id=ident, client=client.name,
                               request=sig)
        self._notify(entry)
        for q in list(self.watchers):
            q.put_nowait(entry.public())
        try:
            await announce(ident)
            approved, always, reason = await asyncio.wait_for(entry.decision, timeout_ms / 1000)
        except asyncio.TimeoutError:
            approved, reason = False, "no decision within %d ms (approval_timeout_ms)" % timeout_ms
        finally:
            self.pending.pop(ident, None)
        self.state.audit.write(event="approval", result="approved" if approved else "denied",
                               id=ident, client=client.name, reason=reason)
        return approved, reason

    def _notify(self, entry):
        cmd = self.state.cfg.approval_notify
        if not cmd:
            return
        env = dict(os.environ, HOSTLINK_APPROVAL_ID=entry.id, HOSTLINK_CLIENT=entry.client,
                   HOSTLINK_REQUEST=describe(entry.sig), HOSTLINK_CWD=entry.sig["cwd"],
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
            why = always_refusal(entry.sig)
            if why:
                return {"ok": False, "error": "not stored as an always rule: %s; approve once instead" % why}
            out["rule_file"], out["rule"] = self._store(entry)
            self.state.audit.write(event="policy", result="always_rule", client=entry.client,
                                   file=out["rule_file"], rule=out["rule"], by_uid=uid)
        reason = str(req.get("reason") or ("approved" if approve else "denied by a person on the host"))
        entry.decision.set_result((approve, bool(req.get("always")), reason))
        return out

    def _store(self, entry):
        """Append the exact rule to policy_dir/CLIENT.conf and apply it now; returns (file, text)."""
        cfg = self.state.cfg
        os.makedirs(cfg.policy_dir, mode=0o700, exist_ok=True)
        path = os.path.join(cfg.policy_dir, "%s.conf" % entry.client)
        rule = "always = %s" % json.dumps(entry.sig, sort_keys=True)
        new = not os.path.exists(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            if new:
                f.write("# written by hostlink-approve --always; one exact request per line\n"
                        "[client %s]\n" % entry.client)
            f.write("# %s: %s\n%s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), describe(entry.sig), rule))
        cfg.always.setdefault(entry.client, []).append(entry.sig)
        return path, rule
