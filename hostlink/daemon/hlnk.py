"""The daemon's side of the first hostlink's protocol (HLNK): one request per connection, answered
with its response shapes and status values (references/protocol.md, "HLNK compatibility"). The
command runs through the daemon's own exec path (policy, limits, audit), captured, not streamed.
"""

import time

from ..wire import protocol as p
from ..wire.hlnk import DEFAULT_OUTPUT_CAP, MAX_REQUEST, Reader, encode

HLNK = object()  # what Server._open returns for such a connection


class _Collector:
    """Stands in for the client's channel: keeps what the daemon would stream, hears hang-ups."""

    def __init__(self, chan):
        self.chan = chan
        self.sock = chan.sock
        self.conn = p.Connection(p.CLIENT)
        self.conn.state = "READY"
        self.out = {p.Stdout: bytearray(), p.Stderr: bytearray()}
        self.total = {p.Stdout: 0, p.Stderr: 0}
        self.cap = {p.Stdout: DEFAULT_OUTPUT_CAP, p.Stderr: DEFAULT_OUTPUT_CAP}
        self.exit = self.error = None

    async def send(self, *bufs):
        self.conn.receive_data(b"".join(bytes(b) for b in bufs))
        while True:
            ev = self.conn.next_event()
            if ev is p.NEED_DATA or ev is None:
                return
            if isinstance(ev, (p.Stdout, p.Stderr)):
                kind = type(ev)
                self.total[kind] += len(ev.data)
                room = self.cap[kind] - len(self.out[kind])
                if room > 0:
                    self.out[kind] += ev.data[:room]
            elif isinstance(ev, p.Exit):
                self.exit = ev
            elif isinstance(ev, p.Error):
                self.error = ev

    async def recv(self):
        return await self.chan.recv()


def _response(server, req_id, status, **fields):
    out = {"version": 1, "id": req_id, "node": server.cfg.node, "status": status}
    out.update(fields)
    return out


def _text(data):
    return data.decode("utf-8", "replace")


async def serve(server, chan, peer):
    """Answer one HLNK request on ``chan``; returns the audit record."""
    reader = Reader(MAX_REQUEST)
    req = None
    while req is None:
        data, fds = await chan.recv()
        if fds:
            raise p.ProtocolError("HLNK requests pass no descriptors")
        if not data:
            return {}
        reader.feed(data)
        req = reader.next()
    req_id = str(req.get("id", ""))[:64]
    kind = req.get("type")
    record = {"event": "hlnk-%s" % kind, "protocol": "hlnk"}
    token = req.get("token")
    if req.get("version") != 1 or kind not in ("exec", "ping") or not isinstance(token, str):
        record["result"] = "bad_request"
        await chan.send(encode(_response(server, req_id, "bad_request", exit_code=-1,
                                         error_msg="expected version 1, type exec or ping, a token")))
        return record
    client = server._client_for(token)
    if client is None:
        record["result"] = "auth_failed"
        await server._penalty(peer)
        await chan.send(encode(_response(server, req_id, "auth_failed", exit_code=-1,
                                         error_msg="authentication failed")))
        return record
    record["client"] = client.name
    if kind == "ping":
        record["result"] = "ok"
        await chan.send(encode(_response(server, req_id, "ok",
                                         uptime_s=int(time.monotonic() - server.started))))
        return record
    command, env, workdir = req.get("command"), req.get("env") or {}, req.get("workdir") or ""
    timeout = req.get("timeout_ms") or 0
    if (not isinstance(command, str) or not isinstance(env, dict) or not isinstance(workdir, str)
            or not isinstance(timeout, int) or timeout < 0
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        record["result"] = "bad_request"
        await chan.send(encode(_response(server, req_id, "bad_request", exit_code=-1,
                                         error_msg="command, env, workdir or timeout_ms malformed")))
        return record
    collector = _Collector(chan)
    for name, key in ((p.Stdout, "max_stdout_bytes"), (p.Stderr, "max_stderr_bytes")):
        if isinstance(req.get(key), int) and req[key] > 0:
            collector.cap[name] = min(req[key], DEFAULT_OUTPUT_CAP)
    conn = p.Connection(p.SERVER)
    conn.state = "STARTING"  # the request was read above, through this module's own reader
    started = time.monotonic()
    try:
        event = p.Exec(command=command, cwd=workdir, env=tuple(env.items()), timeout_ms=timeout,
                       mode="relay")
        await server._exec(collector, conn, [], event, record, client)
    except p.ProtocolError as exc:
        collector.error = p.Error("bad_request", str(exc))
    duration = int((time.monotonic() - started) * 1000)
    if collector.error is not None:
        status = {"auth_failed": "auth_failed", "bad_request": "bad_request"}.get(
            collector.error.code, "error")
        await chan.send(encode(_response(server, req_id, status, exit_code=-1, stdout="", stderr="",
                                         stdout_truncated=False, stderr_truncated=False,
                                         duration_ms=duration, error_msg=collector.error.message)))
        return record
    ex = collector.exit
    if ex is None:
        return record  # the client hung up
    out, err = collector.out[p.Stdout], collector.out[p.Stderr]
    resp = _response(server, req_id, "timeout" if ex.timed_out else "ok",
                     exit_code=-2 if ex.timed_out else ex.exit_code,
                     stdout=_text(out), stderr=_text(err),
                     stdout_truncated=collector.total[p.Stdout] > len(out),
                     stderr_truncated=collector.total[p.Stderr] > len(err),
                     stdout_original_bytes=collector.total[p.Stdout],
                     stderr_original_bytes=collector.total[p.Stderr], duration_ms=ex.duration_ms)
    if ex.timed_out:
        resp["error_msg"] = "command timed out after %d ms" % (timeout or server.cfg.default_timeout_ms)
    await chan.send(encode(resp))
    return record
