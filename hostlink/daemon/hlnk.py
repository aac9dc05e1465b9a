"""The daemon's side of the first hostlink's protocol (HLNK): one request per connection, answered
with its response shapes and statuses (references/protocol.md, references/compat.md).

``serve`` reads the request under the auth deadline, checks its token first as that daemon did,
and hands it to the handler of its type: hlnk_exec.py (exec, exec -D), hlnk_transfer.py (put, get,
their streamed forms, get_stat, stat_fs), hlnk_jobs.py (job). Commands and transfers run through
execute.run_exec like every other request: the same policy, limits and audit.
"""

import asyncio

from ..wire import protocol as p
from . import hlnk_exec, hlnk_jobs, hlnk_transfer
from .auth import client_for
from .channel import within
from .errors import Busy
from .hlnk_request import Request, status_of

HLNK = object()  # what the connection's first bytes say when they are HLNK's
HANDLERS = {
    "exec": hlnk_exec.run, "ping": None, "job": hlnk_jobs.run,
    "put": hlnk_transfer.put, "get": hlnk_transfer.get, "get_stat": hlnk_transfer.get_stat,
    "get_stream": hlnk_transfer.get_stream, "put_stream": hlnk_transfer.put_stream,
    "stat_fs": hlnk_transfer.stat_fs,
}
MEMORY_CAP = hlnk_exec.MEMORY_CAP  # per stream held in memory when the conf sets no cap


async def serve(state, chan, peer, fds, deadline, authenticated, record):
    """Answer one HLNK request on ``chan`` (read within ``deadline`` seconds, as a token must
    come; ``authenticated()`` once it matched), noting it in the audit ``record`` (the
    connection's), on every path: a hang-up or failure after a command ran keeps its end."""
    rq = Request(state, chan, fds)
    rq.peer = peer
    out = None
    try:
        out = await _serve(rq, peer, deadline, authenticated)
    except p.RemoteProtocolError as exc:
        rq.record.setdefault("event", "hlnk")
        rq.record.setdefault("protocol", "hlnk")
        await rq.fail("bad_request", str(exc))
    except Busy as exc:  # hlnk_buffer_bytes
        rq.record.setdefault("event", "hlnk-put")
        rq.record.setdefault("protocol", "hlnk")
        await rq.fail(status_of(exc.code), exc.message)
    finally:  # a hang-up or failure keeps what it knows: the connection adds how it ended
        rq.release()
        record.update(rq.record if out is None else out)


async def _serve(rq, peer, deadline, authenticated):
    try:
        obj = await within(rq.first(), deadline)
    except asyncio.TimeoutError:
        return {"event": "auth", "result": "auth_timeout", "protocol": "hlnk"}
    if obj is None:
        return {}
    rq.obj = obj
    kind = obj.get("type")
    # The type is the client's: named in the audit only when it is one of ours.
    rq.record = {"event": "hlnk-%s" % (kind if isinstance(kind, str) and kind in HANDLERS else "other"),
                 "protocol": "hlnk"}
    token = obj.get("token")
    client = client_for(rq.state.cfg, token) if isinstance(token, str) else None
    if client is None:  # its daemon checks the token before anything else, and echoes no id
        rq.record["result"] = "auth_failed"
        await rq.state.penalties.failed(peer)
        await rq.send({"version": 1, "id": "", "node": rq.state.cfg.node,
                       "status": "auth_failed", "error_msg": "authentication failed"})
        return rq.record
    rq.state.penalties.forget(peer)
    authenticated()
    rq.client = client
    rq.record["client"] = client.name
    if obj.get("version") != 1 or kind not in HANDLERS:
        await rq.fail("bad_request", "unknown message type" if obj.get("version") == 1
                      else "expected version 1")
        return rq.record
    if kind == "ping":
        rq.record["result"] = "ok"
        await rq.answer(uptime_s=rq.state.uptime_s)
    else:
        await HANDLERS[kind](rq)
    return rq.record
