"""``hostlink exec``: the hot path. Build the request from the options, pick how to run it, run it.

In the common case (a Unix socket, no -j, -m, -O, --tty, -D) this module, session.py and the
protocol are all that load; every other way to run (fan-out, a first-hostlink daemon, detached,
capped, a terminal) is imported only when asked for.
"""

import posix

from ..wire.protocol import Exec
from .errors import HostlinkError, UsageError
from .session import (Session, check_timeout, connect_timeout, endpoint, hlnk_request, need_token,
                      raise_for, timeout_fields, with_fields)


def request(opts, words, environ):
    """(protocol.Exec, the container directory HOSTLINK_PATH_MAP translated, or "")."""
    env = []
    for item in opts.env:
        name, sep, value = item.partition("=")
        if not sep or not name or "\0" in item:
            raise UsageError("-e wants NAME=VALUE, got %r" % item)
        env.append((name, value))
    if not words:
        raise UsageError("exec needs a command, e.g. hostlink exec \"ls /home\"")
    if opts.argv:
        argv, command = tuple(words), None
    else:
        argv, command = None, " ".join(words)
        if not command.strip():
            raise UsageError("empty command: a command is required; nothing was run")
    cwd, mapped_from = opts.workdir, ""
    if cwd and not cwd.startswith("/"):
        raise UsageError("-w wants an absolute path on the host, got %r" % cwd)
    if environ.get("HOSTLINK_PATH_MAP"):
        from .pathmap import mapped_workdir
        cwd, mapped_from = mapped_workdir(cwd, environ)
    if "TERM" in environ and posix.isatty(1) and not opts.json:
        env.insert(0, ("TERM", environ["TERM"]))
    return Exec(command=command, argv=argv, cwd=cwd or "", env=tuple(env),
                timeout_ms=0, mode="relay" if opts.json else "fds"), mapped_from


def run(opts, words, environ, warnings):
    """Run the command ``words`` as the options say; its exit code (raises HostlinkError)."""
    req, mapped_from = request(opts, words, environ)
    if opts.all or "," in (opts.target or environ.get("HOSTLINK_TARGET") or ""):
        from . import fanout
        return fanout.run(opts, environ, warnings, fanout.names(opts, environ, warnings), req)
    ep = endpoint(opts, environ, warnings)
    timeout, none = timeout_fields(opts, environ, ep)
    req = with_fields(req, timeout_ms=timeout, no_timeout=none)
    if ep.protocol == "hlnk":
        return run_hlnk(opts, ep, req)
    if opts.detach:
        from . import jobs
        return jobs.detach(opts, ep, with_fields(req, mode="relay", detach=True))
    caps = None
    if opts.max_output or opts.max_stdout or opts.max_stderr or opts.output_to_file:
        from .caps import CappedOutput
        caps = CappedOutput.for_options(opts, environ)
    fds = ep.socket and not (opts.relay or opts.tty)
    req = with_fields(req, mode="fds" if fds else "relay", queue=not opts.no_wait)
    if opts.tty:
        from .terminal import winsize
        rows, cols = winsize()
        req = with_fields(req, tty=True, rows=rows, cols=cols)
    need_token(ep)
    result = run_one(opts, ep, req, caps, mapped_from)
    return finish(opts, result, timeout, caps)


def run_one(opts, ep, req, caps, mapped_from=""):
    """The result of ``req`` on ``ep``, through ``caps`` when given, in a terminal with --tty."""
    with Session(ep, connect_timeout(opts), on_wait=_waiting,
                 on_stuck=_signal_stuck) as session:
        restore = None
        if opts.tty:
            from .terminal import raw_mode
            restore = raw_mode()
        try:
            if caps:
                caps.result = session.result
                result = session.exec(req, out=caps)
                caps.finish(result)
                return result
            return session.exec(req, capture=opts.json)
        except HostlinkError as exc:
            if mapped_from and req.cwd and req.cwd in exc.message:
                exc.message += (" (it is %s in this container, mapped by HOSTLINK_PATH_MAP)"
                                % mapped_from)
            raise
        finally:
            if restore:
                restore()


def finish(opts, result, timeout, caps):
    """Tell what there is to tell about ``result``; the command's exit code."""
    warning = check_timeout(result, timeout)
    if warning or opts.json or (caps and caps.paths):
        from . import output
        if warning:
            output.say("note: " + warning)
        if opts.json:
            output.print_json(output.exec_json(result, caps=caps))
        elif caps and caps.paths:
            output.output_files(caps.paths)
    try:
        raise_for(result)
    except HostlinkError as exc:
        exc.answered = opts.json
        raise
    return result.returncode


def run_hlnk(opts, ep, req):
    """Run on a first-hostlink daemon (protocol = hlnk): its JSON answer, our exit codes."""
    from . import hlnk, output
    need_token(ep)
    resp = hlnk_request(ep, hlnk.exec_fields(req), connect_timeout(opts))
    if opts.json:
        output.print_json(resp)
    error = hlnk.check(resp)
    if error is not None:
        error.answered = opts.json
        raise error
    if not opts.json:
        output.legacy_output(resp)
    return resp.get("exit_code", 1)


def _waiting(event):
    from . import output
    output.waiting(event)


def _signal_stuck():
    from . import output
    output.signal_stuck()
