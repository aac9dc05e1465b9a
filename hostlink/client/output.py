"""Everything the client tells its user: messages on stderr, results on stdout, -j objects.

The one module of the client that writes messages (the command's own output bytes are data and
go straight to fds 1 and 2). Imported only when there is something to say: ``hostlink exec``
that succeeds in fds mode never loads it.
"""

import sys



def say(message):
    """One line on stderr, prefixed ``hostlink: ``."""
    sys.stderr.write("hostlink: %s\n" % message)
    sys.stderr.flush()


def line(text):
    """One line of a result on stdout."""
    sys.stdout.write(text + "\n")


def usage(to_stdout, command=None):
    """The --help text of hostlink or of ``command`` (on stderr when no command was given)."""
    from .usage import text
    (sys.stdout if to_stdout else sys.stderr).write(text(command))


def version(number):
    sys.stdout.write("hostlink %s\n" % number)


def pong(node, uptime_s, as_json):
    """The answer of ``hostlink ping``."""
    if as_json:
        from .session import new_id
        print_json({"version": 1, "id": new_id(), "node": node, "status": "ok",
                    "uptime_s": uptime_s})
    else:
        sys.stdout.write("[%s] pong - uptime %ds\n" % (node, uptime_s))


def error_json(exc, compat=False):
    """The -j object of a request that failed before it had a result (``compat``: its statuses)."""
    from .session import new_id
    status = exc.status
    if compat:
        from .compat import status as its
        status = its(status)
    print_json({"version": 1, "id": new_id(), "node": "", "status": status,
                "exit_code": exc.shell_status or -1, "stdout": "", "stderr": "", "stdout_truncated": False,
                "stderr_truncated": False, "duration_ms": 0, "error_msg": exc.message})


def exec_json(r, target=None, caps=None):
    """The -j object of a finished command (``caps``: the -m/-O CappedOutput it went through)."""
    from .session import new_id
    out = {"version": 1, "id": caps.id if caps else new_id(), "node": r.node,
           "status": "timeout" if r.timed_out else "ok",
           "exit_code": -2 if r.timed_out else r.returncode}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if caps and caps.paths:
            out[name + "_file"] = caps.paths[fd]
            continue
        text, exact = text_and_base64(getattr(r, name) or b"")
        out[name] = text
        if exact is not None:
            out[name + "_base64"] = exact
    for fd, name in ((1, "stdout"), (2, "stderr")):
        kept = len(getattr(r, name) or b"")
        total = caps.total[fd] if caps else (r.totals or {}).get(fd, kept)
        out[name + "_truncated"] = not (caps and caps.paths) and total > kept
        out[name + "_original_bytes"] = total
    out.update(duration_ms=r.duration_ms, signal=r.signal, timed_out=r.timed_out)
    if r.timed_out:
        out["error_msg"] = "command timed out after %d ms and was killed" % r.timeout_ms
    if target is not None:
        out["target"] = target
    return out


def text_and_base64(data):
    """(text, exact base64 or None): non-UTF-8 bytes become U+FFFD in the text."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        import base64
        return data.decode("utf-8", "replace"), base64.b64encode(data).decode("ascii")


def dumps(obj):
    """json.dumps(obj, separators=(",", ":")), compact as the first hostlink's scripts parse it.

    Without importing json for the plain values we print: its decoder pulls in re and enum, 12 ms
    of every -j call (bench/). Strings go through json's own C escaper; anything else falls back
    to json itself.
    """
    try:
        from _json import encode_basestring_ascii
        return _encode(obj, encode_basestring_ascii)
    except (ImportError, TypeError):
        import json
        return json.dumps(obj, separators=(",", ":"))


def _encode(value, string):
    if isinstance(value, str):
        return string(value)
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is dict and all(type(k) is str for k in value):
        return "{%s}" % ",".join("%s:%s" % (string(k), _encode(v, string)) for k, v in value.items())
    if type(value) in (list, tuple):
        return "[%s]" % ",".join(_encode(v, string) for v in value)
    raise TypeError("not a plain value: %s" % type(value).__name__)


def print_json(obj):
    """``obj`` as one line of compact JSON on stdout."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


# ---- exec ---------------------------------------------------------------------------------------


def waiting(event):
    """A protocol.Waiting: for a person's approval, or for a free slot (its text says so)."""
    from ..wire.visible import visible  # the daemon escapes it too; an older one did not
    if event.kind == "slot":
        say(visible(event.text, False))
    else:
        say("waiting for approval %s on %s: %s (up to %d s)"
            % (visible(event.id, False), visible(event.node, False), visible(event.text, False),
               event.timeout_ms // 1000))


def signal_stuck():
    say("the signal waits behind input the command has not read; "
        "press Ctrl-C again to leave (the command is then ended)")


def output_files(paths):
    say("output in %s and %s" % (paths[1], paths[2]))


def legacy_output(resp):
    """The output a first-hostlink daemon answered with, as text."""
    sys.stdout.write(resp.get("stdout", ""))
    sys.stderr.write(resp.get("stderr", ""))


def job_started(reply):
    """exec -D: the job id alone on stdout (for id=$(hostlink exec -D ...)), a line for people on stderr."""
    sys.stdout.write(reply["id"] + "\n")
    sys.stdout.flush()
    say("started job %s on %s; follow it with: hostlink job tail -f %s"
        % (reply["id"], reply["node"], reply["id"]))


# ---- jobs, targets, doctor, shims, transfers ----------------------------------------------------


def job_reply(action, reply):
    """The answer of job list, status, cancel or rm, for people."""
    if action == "list":
        for j in reply["jobs"]:
            sys.stdout.write("%-26s %-9s %4s  %s\n"
                             % (j["id"], j["state"], j.get("exit_code", ""), j["command"]))
    elif action == "status":
        for key in ("id", "state", "exit_code", "signal", "command", "cwd", "pid", "timeout_ms",
                    "stdout_spooled", "stderr_spooled"):
            if key in reply:
                sys.stdout.write("%s: %s\n" % (key, reply[key]))
        if reply.get("spool_truncated"):
            sys.stdout.write("output: CAPPED at job_max_spool_bytes; the job produced %d bytes\n"
                             % (reply.get("stdout_bytes", 0) + reply.get("stderr_bytes", 0)))
    else:
        sys.stdout.write("%s %s\n" % ("cancelled" if action == "cancel" else "removed", reply["id"]))


def targets_table(rows, pinged):
    """``hostlink targets``: one line per target, its state too when ``pinged``."""
    width = max(len(r["name"]) for r in rows)
    wide = max(len(r["where"]) for r in rows)
    for r in rows:
        mark = "*" if r["default"] else " "
        text = "%s %-*s  %-4s  %-*s" % (mark, width, r["name"], r["transport"], wide, r["where"])
        if pinged:
            text += "  %s" % r["state"] + ("  %s (up %ds)" % (r["node"], r["uptime_s"])
                                           if r["state"] == "ok" else "")
        sys.stdout.write(text.rstrip() + "\n")


def shims(found, where):
    """``hostlink shim list``: name, link and timeout of each shim; says so when there is none."""
    for name, path, timeout_ms in found:
        note = "" if timeout_ms is None else "  (timeout %s ms)" % timeout_ms
        if timeout_ms == "0":
            note = "  (no timeout)"
        sys.stdout.write("%-16s %s%s\n" % (name, path, note))
    if not found:
        say("no shims on %s (make one with: hostlink shim install NAME)" % where)


def free_space(path, where, free, total):
    """``hostlink df`` for people (``free`` and ``total`` as the host wrote them)."""
    note = "" if where == path.rstrip("/") else ", the nearest existing ancestor of %s" % path
    sys.stdout.write("%s free of %s bytes (%s of %s) at %s%s\n"
                     % (free, total, _size(int(free)), _size(int(total)), where, note))


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024.0


def progress(moved, total, elapsed, final):
    """The progress line of a transfer on stderr (a terminal): rewritten in place, ended when final."""
    rate = moved / elapsed if elapsed > 0 else 0
    text = _size(moved)
    if total:
        text += " of %s (%d%%)" % (_size(total), min(100, moved * 100 // total))
    text += ", %s/s" % _size(int(rate))
    if final:
        text += ", %.1f s" % elapsed
    elif total and rate > 0 and total > moved:
        text += ", %d s left" % ((total - moved) / rate + 0.5)
    sys.stderr.write("\r\x1b[K" + text + ("\n" if final else ""))
    sys.stderr.flush()


def received(files, size, verify):
    """The summary of a get, on stderr."""
    from ..wire import tarstream
    sys.stderr.write(tarstream.summary(files, size) if verify
                     else "received %d files, %d bytes\n" % (files, size))


def manifest():
    """Where the sha256 manifest of a verified get goes: our stdout, as bytes."""
    return sys.stdout.buffer
