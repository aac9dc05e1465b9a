"""Run one command on several targets at once (``-t a,b,c`` or ``--all``), as pdsh does: every
output line is prefixed ``[name] ``, and the exit code is the worst one."""

import threading

from . import output, targets_conf
from .errors import HostlinkError
from .capture import write_all
from .session import (Session, connect_timeout, need_token, raise_for, target_endpoint,
                      timeout_fields, token_for, with_fields)


def names(opts, environ, warnings):
    """The targets of -t a,b,c or --all, or None for a single target."""
    if opts.all:
        return targets_conf.all_names(opts.targets_file, environ, warnings)
    name = opts.target or environ.get("HOSTLINK_TARGET") or ""
    return [n for n in name.split(",") if n] if "," in name else None


def run(opts, environ, warnings, names, req):
    """Run ``req`` on each target named; the worst exit code, raised when it is hostlink's own."""
    eps = []
    for name in names:
        ep = target_endpoint(name, opts.targets_file, environ, warnings)
        ep.token = token_for(opts, environ, ep.token, warnings)
        eps.append(ep)
        need_token(ep)
    req = with_fields(req, mode="relay", queue=not opts.no_wait)
    # -T (or HOSTLINK_TIMEOUT_MS) for all, else each target's own timeout_ms, as for one target.
    runs = [(ep, with_fields(req, **dict(zip(("timeout_ms", "no_timeout"),
                                             timeout_fields(opts, environ, ep)))))
            for ep in eps]
    code = run_all(runs, connect_timeout(opts), opts.json)
    if code > 1:  # the worst outcome is hostlink's own: keep its code, not "remote failed"
        err = HostlinkError("the worst outcome over %d targets: exit %d" % (len(eps), code))
        err.exit_code = code
        err.answered = opts.json
        raise err
    return code


def run_all(runs, connect_timeout_ms, json_out):
    """Run each (endpoint, request) of ``runs`` at once; returns the worst exit code."""
    lock = threading.Lock()
    codes = {}

    def one(ep, request):
        codes[ep.name] = _run_one(ep, request, connect_timeout_ms, json_out, lock)
    threads = [threading.Thread(target=one, args=pair, daemon=True) for pair in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(codes.values()) if codes else 0


def _run_one(ep, request, connect_timeout_ms, json_out, lock):
    sink = Lines(ep.name, lock)
    try:
        with Session(ep, connect_timeout_ms) as session:
            result = session.exec(request, capture=json_out, out=sink, signals=False)
        sink.flush()
        if json_out:
            with lock:
                output.print_json(output.exec_json(result, ep.name))
        raise_for(result)
        return 0 if result.returncode == 0 else 1
    except HostlinkError as exc:
        sink.flush()
        with lock:
            output.say("[%s] %s" % (ep.name, exc.message))
        return exc.exit_code


class Lines:
    """Writes whole lines with a prefix; a line split across chunks waits for its end."""

    def __init__(self, name, lock):
        self.prefix = ("[%s] " % name).encode()
        self.lock = lock
        self.partial = {1: b"", 2: b""}

    def __call__(self, fd, data):
        buf = self.partial[fd] + data
        lines = buf.split(b"\n")
        self.partial[fd] = lines.pop()
        if lines:
            self._write(fd, b"".join(self.prefix + line + b"\n" for line in lines))

    def flush(self):
        for fd, rest in self.partial.items():
            if rest:
                self._write(fd, self.prefix + rest + b"\n")

    def _write(self, fd, data):
        with self.lock:
            write_all(fd, data)
