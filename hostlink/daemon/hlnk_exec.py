"""The first hostlink's exec over HLNK: the command runs through execute.run_exec (or, with
``detach``, starts a job through execute.start_job); its output is kept up to the caps the
request and the conf set (``default_max_output_bytes``, ``max_output_bytes``), as that daemon
kept it, and answered in one JSON object. No input is taken; a hang-up ends the command.
"""

import json
import logging
import os

from ..wire import protocol as p
from ..wire.hlnk import DEFAULT_OUTPUT_CAP
from . import execute
from .channel import TooManyFds
from .errors import BadRequest, Refused
from .hlnk_request import count, status_of
from .running import RELAY_CHUNK, readable_again

log = logging.getLogger("hostlinkd")
_SAFE_ID = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
MEMORY_CAP = 4 << 20  # per stream, when the conf sets no cap: past it truncated, with its flag
_EMPTY = dict(stdout="", stderr="", stdout_truncated=False, stderr_truncated=False,
              stdout_original_bytes=0, stderr_original_bytes=0)


def caps(cfg, obj):
    """Bytes kept per stream: the request's max_*_bytes, else default_max_output_bytes, never
    over max_output_bytes (MEMORY_CAP when the conf sets no cap: each result is held whole and
    encoded once more as JSON), nor the 64 MiB a response of its may carry."""
    hard = cfg.max_output_bytes or max(MEMORY_CAP, cfg.default_max_output_bytes or 0)
    hard = min(hard, DEFAULT_OUTPUT_CAP)
    out = {}
    for kind, key in ((p.Stdout, "max_stdout_bytes"), (p.Stderr, "max_stderr_bytes")):
        out[kind] = min(count(obj.get(key)) or cfg.default_max_output_bytes or hard, hard)
    return out


def exec_request(obj):
    """The protocol.Exec an HLNK exec request stands for, or None when it is malformed."""
    command, env, workdir = obj.get("command"), obj.get("env") or {}, obj.get("workdir") or ""
    timeout = obj.get("timeout_ms") or 0
    if isinstance(timeout, float) and timeout.is_integer():
        timeout = int(timeout)
    if (not isinstance(command, str) or not isinstance(env, dict) or not isinstance(workdir, str)
            or not isinstance(timeout, int) or timeout < 0
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return None
    return p.Exec(command=command, cwd=workdir, env=tuple(env.items()), timeout_ms=timeout,
                  mode="relay")


async def run(rq):
    """Answer an exec request (with detach: start a job and answer its id)."""
    req = exec_request(rq.obj)
    if req is None:
        await rq.fail("bad_request", "command, env, workdir or timeout_ms malformed")
        return
    if rq.obj.get("detach") is True:
        await _detach(rq, req)
        return
    paths = None
    if rq.obj.get("output_to_file") is True:
        try:
            rq.fds[:], paths = output_files(rq.state.cfg, rq.client, rq.id)
        except (Refused, OSError) as exc:
            await rq.fail("error", getattr(exc, "message", None) or "cannot create output files "
                          "in %s: %s" % (rq.state.cfg.output_tmpdir, exc.strerror))
            return
        req = p.Exec(**dict({n: getattr(req, n) for n in req.__slots__}, mode="fds"))
    capture = Capture(rq.chan, rq.fds, caps(rq.state.cfg, rq.obj), rq, req.timeout_ms)
    capture.paths = paths
    rq.record.update(event="exec", cwd=req.cwd, mode=req.mode, **execute.asked(req))
    try:
        rq.record.update((await execute.run_exec(rq.state, rq.client, req, capture,
                                                 rq.audit_start)).audit())
    except p.RemoteProtocolError as exc:
        capture.refusal = ("bad_request", str(exc))
    if capture.refusal is not None:
        code, message = capture.refusal
        await rq.fail(status_of(code), message, exit_code=-1, duration_ms=rq.ms(), **_EMPTY)
    # else answered at the command's exit, or the client hung up


async def _detach(rq, req):
    """exec -D: a job, authorized as an exec; its id answered at once, as the first hostlink's."""
    fields = {n: getattr(req, n) for n in req.__slots__}
    fields.update(detach=True, timeout_ms=count(rq.obj.get("job_timeout_ms")))
    req = p.Exec(**fields)
    rq.record.update(event="job_start", cwd=req.cwd, **execute.asked(req))
    capture = Capture(rq.chan, rq.fds, {})
    outcome, reply = await execute.start_job(rq.state, rq.client, req, capture)
    rq.record.update(outcome.audit())
    if reply is None:
        code, message = capture.refusal
        await rq.fail(status_of(code), message, exit_code=-1, duration_ms=rq.ms(), **_EMPTY)
        return
    await rq.answer(exit_code=0, detached=True, job_id=json.loads(reply.text)["id"],
                    stdout_truncated=False, stderr_truncated=False, stdout_original_bytes=0,
                    stderr_original_bytes=0, duration_ms=rq.ms())


def output_files(cfg, client, ident):
    """(stdin, stdout, stderr for the command; the two paths) of output_to_file: hl_ID_stdout and
    hl_ID_stderr made anew in output_tmpdir, 0600, the command user's, as its daemon made them."""
    from . import policy
    if not ident or ident.strip(_SAFE_ID):
        raise BadRequest("output_to_file needs a request id of letters, digits, '.', '_', '-'")
    user = policy.user_for(cfg, client)
    os.makedirs(cfg.output_tmpdir, 0o755, exist_ok=True)
    dfd = os.open(cfg.output_tmpdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)]
    try:
        for stream in ("stdout", "stderr"):
            name = "hl_%s_%s" % (ident, stream)
            try:
                os.unlink(name, dir_fd=dfd)  # never written through: a new file, or none
            except FileNotFoundError:
                pass
            fds.append(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                               os.O_CLOEXEC, 0o600, dir_fd=dfd))
            os.fchown(fds[-1], user.pw_uid, user.pw_gid)
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        os.close(dfd)
    return fds, [os.path.join(cfg.output_tmpdir, "hl_%s_%s" % (ident, s)) for s in ("stdout", "stderr")]


def _size(path):
    """The size of an output file; 0 once the command removed it (it is the command user's)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class Capture:
    """An exec request's side of an HLNK connection: output kept up to the caps, no input."""

    def __init__(self, chan, fds, cap, rq=None, asked_ms=0):
        self.chan = chan
        self.rq, self.asked_ms = rq, asked_ms
        self.fds = fds
        self.out = {p.Stdout: bytearray(), p.Stderr: bytearray()}
        self.total = {p.Stdout: 0, p.Stderr: 0}
        self.cap = cap
        self.ended = self.refusal = None
        self.timeout_ms = 0  # the one in force (Started)
        self.paths = None  # output_to_file: where its output went

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
        self.timeout_ms = timeout_ms

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
        out, cap = self.out[kind], self.cap[kind]
        while True:
            try:
                data = os.read(fd, RELAY_CHUNK)
            except OSError as exc:
                if not await readable_again(command, fd, exc):
                    return
                continue
            if not data:
                return
            if not command.hung_up:
                self.total[kind] += len(data)
                if cap > len(out):
                    out += data[:cap - len(out)]

    async def exit(self, event):
        """Answer now, while the command's slot is held: an answer (up to 2 x 4 MiB of output,
        up to 6 bytes of JSON a byte) waiting for a client that does not read counts against
        max_concurrent, not beside it."""
        self.ended = event
        await self.rq.send(self.response(self.rq, self.asked_ms))

    def response(self, rq, asked_ms):
        """The HLNK response for the command's Exit."""
        ex = self.ended
        out, err = self.out[p.Stdout], self.out[p.Stderr]
        if self.paths:  # output_to_file: the files, whole
            fields = dict(stdout_file=self.paths[0], stderr_file=self.paths[1],
                          stdout_truncated=False, stderr_truncated=False)
            sizes = [_size(path) for path in self.paths]
        else:
            fields = dict(stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
                          stdout_truncated=self.total[p.Stdout] > len(out),
                          stderr_truncated=self.total[p.Stderr] > len(err))
            sizes = [self.total[p.Stdout], self.total[p.Stderr]]
        resp = rq.response("timeout" if ex.timed_out else "ok",
                           exit_code=-2 if ex.timed_out else ex.exit_code, **fields,
                           stdout_original_bytes=sizes[0], stderr_original_bytes=sizes[1],
                           duration_ms=ex.duration_ms)
        if asked_ms and self.timeout_ms and asked_ms > self.timeout_ms:
            # Its client says the -T asked for was over max_timeout_ms (1.5).
            resp.update(timeout_requested_ms=asked_ms, timeout_effective_ms=self.timeout_ms)
        if ex.timed_out:
            resp["error_msg"] = "command timed out after %d ms" % self.timeout_ms
        return resp
