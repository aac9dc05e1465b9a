"""Detached jobs: ``exec -D`` starts one, ``hostlink job ...`` lists, follows, waits, ends them."""

from ..wire.protocol import JobRequest
from . import output
from .errors import HostlinkError, UsageError
from .session import Session, connect_timeout, endpoint, need_token, raise_for

ACTIONS = ("list", "status", "tail", "wait", "cancel", "rm")
FLAGS = {"-f", "--follow", "--stderr", "--kill", "-j", "--json"}


def detach(opts, ep, req):
    """exec -D: start ``req`` as a job and tell its id."""
    need_token(ep)
    with Session(ep, connect_timeout(opts)) as session:
        reply = session.call(req)
    if opts.json:
        output.print_json(reply)
    else:
        output.job_started(reply)
    return 0


def parse(words):
    """(JobRequest, how many ids, -j given) from the words after ``job``."""
    if not words:
        raise UsageError("usage: hostlink job list | status ID | tail ID [-f] [--stderr] | "
                         "wait ID [-x] | cancel ID [--kill] | rm ID (see hostlink help job)")
    if words[0] not in ACTIONS:
        from .help import unknown
        raise unknown("job action", words[0], ACTIONS, "hostlink help job")
    action, rest = words[0], words[1:]
    flags = {w for w in rest if w.startswith("-")}
    ids = [w for w in rest if not w.startswith("-")]
    unknown_flags = flags - FLAGS
    if unknown_flags:
        from .help import unknown
        raise unknown("job flag", sorted(unknown_flags)[0], FLAGS, "hostlink help job")
    req = JobRequest(action, ids[0] if ids else "",
                     "stderr" if "--stderr" in flags else "stdout",
                     bool(flags & {"-f", "--follow"}), "--kill" in flags)
    return req, len(ids), bool(flags & {"-j", "--json"})


def run(opts, words, environ, warnings):
    """hostlink job list | status ID | tail ID [-f] [--stderr] | wait ID | cancel ID [--kill] | rm ID
    (main.py has taken -x: job wait -x exits with the job's own status)"""
    req, ids, as_json = parse(words)
    if as_json and not opts.json:  # -j after ``job``: a failure is told in JSON too
        try:
            return _run(opts, req, ids, True, environ, warnings)
        except HostlinkError as exc:
            output.error_json(exc)
            exc.answered = True
            raise
    return _run(opts, req, ids, opts.json, environ, warnings)


def _run(opts, req, ids, as_json, environ, warnings):
    if req.action != "list" and ids != 1:
        raise UsageError("job %s needs one job id" % req.action)
    ep = endpoint(opts, environ, warnings)
    need_token(ep)
    with Session(ep, connect_timeout(opts)) as session:
        if req.action in ("tail", "wait"):
            result = session.stream(req)
        else:
            reply = session.call(req)
    if req.action == "tail":
        return 0
    if req.action == "wait":
        raise_for(result)
        return result.returncode
    if as_json and opts.compat:
        from . import compat
        output.print_json(compat.job(reply))
    elif as_json:
        output.print_json(reply)
    else:
        output.job_reply(req.action, reply)
    return 0
