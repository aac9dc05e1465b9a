"""The admin socket: root only, one JSON object per line each way (``hostlink-approve`` speaks it).

It lists and watches the requests that wait for a person, carries their decisions to
approvals.py, and answers ``status``: what the daemon holds (limits.py), its descriptors and
children.
"""

import asyncio
import json
import os

from .auth import peer_credentials


class AdminSocket:
    """Listens on admin_socket and answers list, watch, approve and deny."""

    def __init__(self, state):
        self.state = state  # for admin_socket and the approvals
        self._listener = None

    async def start(self):
        path = self.state.cfg.admin_socket
        if not path:
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.exists(path):
            os.unlink(path)
        old = os.umask(0o177)
        try:
            self._listener = await asyncio.start_unix_server(self._serve, path=path)
        finally:
            os.umask(old)

    async def stop(self):
        if self._listener:
            self._listener.close()
            try:
                os.unlink(self.state.cfg.admin_socket)
            except OSError:
                pass
        self.state.approvals.stop()

    async def _serve(self, reader, writer):
        _pid, uid, _gid = peer_credentials(writer.get_extra_info("socket"))
        approvals = self.state.approvals
        try:
            if uid not in (0, os.getuid()):
                await _reply(writer, {"ok": False, "error": "the admin socket is for root"})
                return
            line = await asyncio.wait_for(reader.readline(), 30)
            try:
                req = json.loads(line or b"{}")
            except ValueError:
                await _reply(writer, {"ok": False, "error": "not JSON"})
                return
            op = req.get("op")
            if op == "list":
                pending = [entry.public() for entry in approvals.pending.values()]
                await _reply(writer, {"ok": True, "pending": pending})
            elif op == "watch":
                await _watch(writer, approvals)
            elif op == "status":
                await _reply(writer, dict(status(self.state), ok=True))
            elif op in ("approve", "deny"):
                await _reply(writer, approvals.decide(req, op == "approve", uid))
            else:
                await _reply(writer, {"ok": False, "error": "unknown op %r" % op})
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


async def _reply(writer, obj):
    writer.write((json.dumps(obj) + "\n").encode())
    await writer.drain()


async def _watch(writer, approvals):
    q = asyncio.Queue()
    approvals.watchers.add(q)
    try:
        for p in list(approvals.pending.values()):
            await _reply(writer, p.public())
        while True:
            await _reply(writer, await q.get())
    finally:
        approvals.watchers.discard(q)


def status(state):
    """What hostlinkd holds now: connections by state, commands, jobs, approvals, descriptors,
    children (an attack test compares these with their baseline afterwards)."""
    out = state.limits.status()
    out.update(pid=os.getpid(), descriptors=len(os.listdir("/proc/self/fd")) - 1,
               children=len(_children()), watched_children=state.reaper.watched,
               pending_approvals=len(state.approvals.pending),
               running_commands=len(state.commands), queued=len(state.slots.queue),
               audit_failures=state.audit.failures,
               audit_suppressed=state.audit.suppressed, audit_broken=state.audit.broken)
    return out


def _children():
    kids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/children" % task) as f:
                kids.extend(f.read().split())
        except OSError:
            pass
    return kids
