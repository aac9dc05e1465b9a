"""The daemon's side of the first hostlink's protocol (HLNK): one request per connection, answered
with its response shapes and status values (references/protocol.md, "HLNK compatibility"). An exec
runs through execute.run_exec like any other (policy, limits, audit); its exchange here captures
the output up to the request's caps instead of streaming it, takes no input, and hears the hang-up.
"""

import errno
import logging
import os
import time

from ..wire import protocol as p
from ..wire.hlnk import DEFAULT_OUTPUT_CAP, MAX_REQUEST, Reader, encode
from . import execute
from .auth import client_for
from .channel import TooManyFds, wait_readable
from .running import RELAY_CHUNK

log = logging.getLogger("hostlinkd")
HLNK = object()  # what the connection's first bytes say when they are HLNK's


async def serve(state, chan, peer, fds):
    """Answer one HLNK request on ``chan``; returns the audit record."""
    req = await _read_request(chan, fds)
    if req is None:
        return {}
    req_id = str(req.get("id", ""))[:64]
    kind = req.get("type")
    record = {"event": "hlnk-%s" % kind, "protocol": "hlnk"}
    token = req.get("token")
    if req.get("version") != 1 or kind not in ("exec", "ping") or not isinstance(token, str):
        record["result"] = "bad_request"
        await chan.send(_failure(state, req_id, "bad_request",
                                 "expected version 1, type exec or ping, a token"))
        return record
    client = client_for(state.cfg, token)
    if client is None:
        record["result"] = "auth_failed"
        await state.penalties.failed(peer)
        await chan.send(_failure(state, req_id, "auth_failed", "authentication failed"))
        return record
    record["client"] = client.name
    if kind == "ping":
        record["result"] = "ok"
        await chan.send(encode(_response(state, req_id, "ok", uptime_s=state.uptime_s)))
        return record
    exec_req = _exec_request(req)
    if exec_req is None:
        record["result"] = "bad_request"
        await chan.send(_failure(state, req_id, "bad_request",
                                 "command, env, workdir or timeout_ms malformed"))
        return record
    return await _exec(state, chan, fds, client, req, exec_req, record)


async def _read_request(chan, fds):
    """The request as a dict, or None when the client closed first."""
    reader = Reader(MAX_REQUEST)
    while True:
        data, new_fds = await chan.recv()
        fds.extend(new_fds)
        if new_fds:
            raise p.RemoteProtocolError("HLNK requests pass no descriptors")
        if not data:
            return None
        reader.feed(data)
        req = reader.next()
        if req is not None:
            return req


def _exec_request(req):
    """The Exec an HLNK exec request stands for, or None when it is malformed."""
    command, env, workdir = req.get("command"), req.get("env") or {}, req.get("workdir") or ""
    timeout = req.get("timeout_ms") or 0
    if (not isinstance(command, str) or not isinstance(env, dict) or not isinstance(workdir, str)
            or not isinstance(timeout, int) or timeout < 0
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return None
    return p.Exec(command=command, cwd=workdir, env=tuple(env.items()), timeout_ms=timeout,
                  mode="relay")


async def _exec(state, chan, fds, client, req, exec_req, record):
    """Run the command, captured; answer its outcome. Returns the audit record."""
    capture = Capture(chan, fds)
    for kind, key in ((p.Stdout, "max_stdout_bytes"), (p.Stderr, "max_stderr_bytes")):
        if isinstance(req.get(key), int) and req[key] > 0:
            capture.cap[kind] = min(req[key], DEFAULT_OUTPUT_CAP)
    record.update(event="exec", cwd=exec_req.cwd, mode=exec_req.mode, **execute.asked(exec_req))
    req_id = str(req.get("id", ""))[:64]
    started = time.monotonic()
    try:
        record.update((await execute.run_exec(state, client, exec_req, capture)).audit())
    except p.RemoteProtocolError as exc:
        capture.refusal = ("bad_request", str(exc))
    if capture.refusal is not None:
        code, message = capture.refusal
        status = code if code in ("auth_failed", "bad_request") else "error"
        await chan.send(_failure(state, req_id, status, message, stdout="", stderr="",
                                 stdout_truncated=False, stderr_truncated=False,
                                 duration_ms=int((time.monotonic() - started) * 1000)))
    elif capture.ended is not None:  # else the client hung up
        await chan.send(encode(capture.response(state, req_id, exec_req.timeout_ms)))
    return record


class Capture:
    """An exec request's side of an HLNK connection: output kept up to the caps, no input."""

    def __init__(self, chan, fds):
        self.chan = chan
        self.fds = fds
        self.out = {p.Stdout: bytearray(), p.Stderr: bytearray()}
        self.total = {p.Stdout: 0, p.Stderr: 0}
        self.cap = {p.Stdout: DEFAULT_OUTPUT_CAP, p.Stderr: DEFAULT_OUTPUT_CAP}
        self.ended = self.refusal = None

    @property
    def sock(self):
        return self.chan.sock

    async def refuse(self, exc):
        self.refusal = (exc.code, exc.message)

    async def waiting(self, ident, node, text, timeout_ms, kind="approval"):
        pass  # HLNK has no word for it: the client just waits

    async def until_closed(self):
        """Read (and drop) what the client sends until it closes."""
        while True:
            data, new_fds = await self.chan.recv()
            self.fds.extend(new_fds)
            if not data:
                return

    async def started(self, pid, timeout_ms):
        pass

    async def input(self, command, pipes):
        """HLNK sends nothing after its request: its hang-up, or anything more, ends the command."""
        try:
            _data, new_fds = await self.chan.recv()
            self.fds.extend(new_fds)
        except (ConnectionError, OSError, TooManyFds) as exc:
            log.debug("client input ended: %s", exc)
        if not command.exited.done():
            command.hang_up()

    async def output(self, fd, kind, command):
        """Keep one output pipe up to its cap, counting the rest, until EOF or the command ended."""
        total, out, cap = self.total, self.out[kind], self.cap[kind]
        while True:
            try:
                data = os.read(fd, RELAY_CHUNK)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return  # a pseudo-terminal whose other side closed: its end of file
                if not isinstance(exc, BlockingIOError):
                    raise
                if command.exited.done():
                    return  # what a background child writes later is not waited for
                await wait_readable(command.loop, fd, until=command.exited)
                continue
            if not data:
                return
            if not command.hung_up:
                total[kind] += len(data)
                if cap > len(out):
                    out += data[:cap - len(out)]

    async def exit(self, event):
        self.ended = event

    def response(self, state, req_id, timeout_ms):
        """The HLNK response for the command's Exit."""
        ex = self.ended
        out, err = self.out[p.Stdout], self.out[p.Stderr]
        resp = _response(state, req_id, "timeout" if ex.timed_out else "ok",
                         exit_code=-2 if ex.timed_out else ex.exit_code,
                         stdout=_decode_lossy(out), stderr=_decode_lossy(err),
                         stdout_truncated=self.total[p.Stdout] > len(out),
                         stderr_truncated=self.total[p.Stderr] > len(err),
                         stdout_original_bytes=self.total[p.Stdout],
                         stderr_original_bytes=self.total[p.Stderr], duration_ms=ex.duration_ms)
        if ex.timed_out:
            resp["error_msg"] = "command timed out after %d ms" % (timeout_ms or state.cfg.default_timeout_ms)
        return resp


def _response(state, req_id, status, **fields):
    out = {"version": 1, "id": req_id, "node": state.cfg.node, "status": status}
    out.update(fields)
    return out


def _failure(state, req_id, status, message, **fields):
    """The encoded response of a request that did not run."""
    return encode(_response(state, req_id, status, exit_code=-1, **fields, error_msg=message))


def _decode_lossy(data):
    """Output as text for JSON: UTF-8, bad bytes replaced."""
    return data.decode("utf-8", "replace")
