"""Running one request, whichever wire protocol brought it (session.c's do_exec, in OpenSSH's terms).

``authorize`` decides, in one place, whether and how a request runs: policy, the user and working
directory, and a person's approval where a rule asks for one. ``run_exec`` then starts the command
on the request's stdio and runs it to its end; ``start_job`` hands it to a job runner instead.
Both talk to the client only through the ``exchange`` its wire protocol provides:

    refuse(Refused)            the request is refused (before anything ran)
    waiting(id, node, text, timeout_ms, kind), until_closed()   while a person decides, or in line
    started(pid, timeout_ms), input(command, pipes), output(fd, kind, command), exit(Exit)
    fds, sock                  the descriptors the client passed, the connection's socket

Nothing is spawned before policy (and a person, where asked) allowed the request.
"""

import asyncio
import json
import os
from collections import namedtuple

from ..wire import protocol as p
from . import policy, running, spawn
from .approvals import describe, signature
from .channel import close_all, ended
from .errors import BadRequest, Busy, Denied, Refused

# What authorize() decided: the request to run (a transfer becomes its helper's), as whom, where
# (``target``: a policy.Target holding the checked directory and executable open until the spawn;
# its owner closes it).
Decision = namedtuple("Decision", "request user target approved")


class Outcome:
    """How an exec or job start ended, as the fields it adds to the request's audit line."""

    __slots__ = ("approved", "fields")

    def __init__(self):
        self.approved = False
        self.fields = {}

    def refused(self, exc):
        self.fields.update(result=exc.code, error=exc.message)

    def audit(self):
        """The audit fields, in the order the daemon has always written them."""
        return dict(approved=True, **self.fields) if self.approved else self.fields


def asked(req):
    """What an Exec asks to run, as its audit line names it."""
    return {"argv": list(req.argv)} if req.argv is not None else {"command": req.command}


async def authorize(state, client, req, exchange):
    """The Decision to run ``req`` for ``client``; a Refused when it may not run."""
    cfg = state.cfg
    user = policy.user_for(cfg, client)
    if req.xfer:  # its helper runs in /, whatever cwd was asked (it must be allowed all the same)
        root = policy.check_transfer(cfg, client, req)
        req = transfer_request(req, user, root, client.allow_setuid)
        return Decision(req, user, policy.hold(cfg, req, "/"), False)
    cwd = spawn.working_dir(cfg, req, user, client.cwd_allow[0] if client.cwd_allow else "")
    # Held from here to the spawn: what is checked (and what a person approves) is what runs.
    target = policy.hold(cfg, req, cwd)
    try:
        if policy.check(cfg, client, req, target) != "ask":
            return Decision(req, user, target, False)
        approved, reason = await _approval(state, client, req, target, exchange)
        if not approved:
            raise Denied("not approved on %s: %s" % (cfg.node, reason))
    except BaseException:
        target.close()
        raise
    return Decision(req, user, target, True)


async def _approval(state, client, req, target, exchange):
    """Wait for a person to approve the request; (approved, reason). A hang-up withdraws it."""
    sig = signature(req, target)
    timeout = state.cfg.approval_timeout_ms

    async def announce(ident):
        await exchange.waiting(ident, state.cfg.node, describe(sig), timeout)
    ask = state.loop.create_task(state.approvals.ask(client, sig, timeout, announce, target))
    gone = state.loop.create_task(exchange.until_closed())
    done, _ = await asyncio.wait({ask, gone}, return_when=asyncio.FIRST_COMPLETED)
    if ask in done:
        await ended(gone)
        return ask.result()
    await ended(ask, gone)
    raise ConnectionResetError("the client went away while waiting for approval")


def transfer_request(req, user, root, setuid):
    """hostlink cp/put/get/df as the request that runs its host-side helper as the client's user;
    the helper resolves the client's path beneath ``root`` itself. What the daemon decides comes
    first and by position, so nothing the client sends can pose as it."""
    argv, env = spawn.helper("transfer_helper", root, "keep" if setuid else "strip", req.xfer,
                             *req.argv, user=user)
    fields = {n: getattr(req, n) for n in req.__slots__}
    fields.update(argv=tuple(argv), command=None, env=tuple(env.items()), xfer="")
    return p.Exec(**fields)


def check_input(req, fds=()):
    """Refuse what cannot run before anything is taken: NULs or unencodable text (an HLNK lone
    surrogate), window sizes a terminal cannot hold, descriptors the mode does not take."""
    texts = [req.command or "", req.cwd] + list(req.argv or ()) + [x for kv in req.env for x in kv]
    for text in texts:
        if "\0" in text:
            raise BadRequest("the request holds a NUL byte, which no command line or "
                             "environment can carry; nothing was run")
        try:
            text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise BadRequest("the request holds text that is not UTF-8 (a lone surrogate); "
                             "nothing was run") from None
    if not (0 <= req.rows <= 0xFFFF and 0 <= req.cols <= 0xFFFF):
        raise BadRequest("window size %dx%d is out of range (0 to 65535)" % (req.rows, req.cols))
    if req.timeout_ms < 0:
        raise BadRequest("timeout_ms must not be negative")
    if req.mode == "fds" and len(fds) != 3:
        raise p.RemoteProtocolError("fds mode needs exactly 3 descriptors, got %d" % len(fds))
    if req.mode == "relay" and fds:
        raise p.RemoteProtocolError("relay mode takes no descriptors")
    if req.mode not in ("fds", "relay"):
        raise p.RemoteProtocolError("unknown mode %r" % req.mode)


async def run_exec(state, client, req, exchange, on_start=None):
    """Run one exec request to its end; its Outcome. RemoteProtocolError when it is malformed.

    Input is checked before anything is taken; then it is authorized (a person may be asked),
    then a slot taken (waiting in line for one when the request asked to queue), then spawned.
    What is taken is released on every path."""
    cfg = state.cfg
    outcome = Outcome()
    decision = None
    try:
        check_input(req, exchange.fds)
        refusal = state.audit_refusal()  # tries a record once when the log had failed
        if refusal:
            raise Busy(refusal)
        if not req.queue and state.limits.commands_busy():  # no person asked for nothing
            raise Busy(state.limits.commands_busy())
        # Transfers, terminals and who asked for none: as long as they take (max_timeout_ms caps).
        untimed = req.xfer or req.tty or req.no_timeout
        timeout = policy.timeout_for(cfg, client, req.timeout_ms,
                                     0 if untimed else cfg.default_timeout_ms, cfg.max_timeout_ms)
        decision = await authorize(state, client, req, exchange)
        outcome.approved = decision.approved
        slot = await state.slots.take(client.name, req.queue, exchange)
        _audit_start(state, outcome, timeout, on_start, slot)
        command = _start(state, client, req, decision, exchange, timeout, slot)
    except Refused as exc:
        outcome.refused(exc)
        await exchange.refuse(exc)
        return outcome
    finally:
        if decision is not None:
            decision.target.close()
    await _run(state, command, exchange, timeout, outcome)
    return outcome


def _audit_start(state, outcome, timeout, on_start, slot):
    """The command's start record, written before it can run: with audit_failure = closed, a
    command whose start cannot be recorded does not start (its end names its pid)."""
    outcome.fields.update(request=os.urandom(6).hex(), timeout_ms=timeout)
    if on_start is None:
        return
    refusal = state.audit_refusal(on_start(dict(outcome.audit(), result="started")))
    if refusal:
        slot.release()
        raise Busy(refusal)


def _start(state, client, req, decision, exchange, timeout, slot):
    """Spawn the authorized request on its ``slot``; its running.Command, holding the slot and our
    pipe ends."""
    tty = req.tty and req.mode == "relay"
    stdio, ours = [], []
    try:
        stdio, ours = _stdio(req, exchange)
        proc = spawn.spawn(state.cfg, decision.request, decision.user, decision.target, *stdio,
                           tty=tty)
        return running.Command(state, proc, timeout, client.name, tty, slot, ours)
    except BaseException:
        close_all(ours)
        slot.release()
        raise
    finally:
        close_all(stdio)  # the child has its copies; ours would hold pipes open


def _stdio(req, exchange):
    """(the child's stdin, stdout, stderr; our ends) for the request's mode (checked before)."""
    if req.mode == "fds":
        stdio = exchange.fds[:]
        del exchange.fds[:]  # now owned by stdio: closed once, after the spawn
        return stdio, []
    stdio, ours = running.pty(req) if req.tty else running.relay_pipes()
    running.grow_send_buffer(exchange.sock)
    return stdio, ours


async def _run(state, command, exchange, timeout, outcome):
    """Run a started command to its end and note how it ended in ``outcome`` (its end record;
    its start was written before the spawn: a running command is visible)."""
    state.commands.add(command)
    outcome.fields.update(pid=command.proc.pid)
    try:
        await running.run(command, exchange, command.pipes, timeout)
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass  # the client is gone or the daemon stops: the outcome says how far it went
    finally:
        if not command.exited.done():
            command.hang_up()  # nothing runs on without its connection, nor out of its slot
            await asyncio.wait([command.exited], timeout=state.cfg.kill_grace_ms / 1000 + 1)
        state.commands.discard(command)
        command.release()
        status = command.exited.result() if command.exited.done() else None
        if status is not None:
            code, sig = spawn.exit_code(status)
            outcome.fields.update(exit_code=code, signal=sig)
        outcome.fields.update(
            result="timeout" if command.timed_out else "hangup" if command.hung_up else
            "ok" if status is not None else "disconnected",
            timed_out=command.timed_out, duration_ms=command.duration_ms)


async def start_job(state, client, req, exchange):
    """exec -D: authorize as for exec, start a job runner; (Outcome, Reply to send)."""
    cfg = state.cfg
    outcome = Outcome()
    decision = None
    try:
        refusal = state.audit_refusal()  # a job's start is recorded once it runs: refused before
        if refusal:
            raise Busy(refusal)
        decision = await authorize(state, client, req, exchange)
        outcome.approved = decision.approved
        req = decision.request
        timeout = policy.timeout_for(cfg, client, req.timeout_ms,
                                     0 if req.no_timeout else cfg.job_default_timeout_ms,
                                     cfg.job_max_timeout_ms)
        ident = state.jobs.start(client, req, decision.target, decision.user, timeout)
    except Refused as exc:
        outcome.refused(exc)
        await exchange.refuse(exc)
        return outcome, None
    finally:
        if decision is not None:
            decision.target.close()
    outcome.fields.update(result="ok", job=ident, timeout_ms=timeout)
    return outcome, p.Reply(json.dumps({"id": ident, "node": cfg.node, "timeout_ms": timeout}))
