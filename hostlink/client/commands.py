"""The hostlink commands off the hot path of ``exec``: targets, doctor, shims, jobs, transfers,
fan-out, the first hostlink's protocol, output caps and terminals. cli.py imports this module only
when one of them is used, so ``hostlink exec`` starts without loading it."""

import os
import sys

from .main import (_connect_timeout, _dumps, _int, _json_result, _need_token, _new_id,
                  _print_json, _replace, _say, endpoint, ping)
from .errors import HostlinkError, UsageError


def _fanout_names(opts, environ):
    """The targets of -t a,b,c or --all, or None for a single target."""
    if opts.all:
        from . import targets
        return targets.all_names(opts.targets_file, environ)
    name = opts.target or environ.get("HOSTLINK_TARGET") or ""
    return [n for n in name.split(",") if n] if "," in name else None


def _mapped_workdir(workdir, environ):
    """-w, or our own directory when no -w is given, through HOSTLINK_PATH_MAP."""
    from .shims import path_map, to_host
    mapping = path_map(environ)
    if workdir:
        return to_host(workdir, mapping) or workdir
    return to_host(_cwd(), mapping) or ""


def _cwd():
    try:
        return os.getcwd()
    except OSError:
        return ""


def _fanout(opts, environ, names, req):
    from . import fanout, targets
    eps = []
    for name in names:
        ep = targets.find(name, opts.targets_file, environ)
        if opts.token is not None:
            ep.token = opts.token
        eps.append(ep)
        _need_token(ep)
    req = _replace(req, mode="relay")
    given = _int(opts.timeout, "-T") if opts.timeout is not None else None
    # -T for all, else each target's own timeout_ms, as a single target would have it.
    runs = [(ep, _replace(req, timeout_ms=ep.timeout_ms if given is None else given)) for ep in eps]
    code = fanout.run(runs, _connect_timeout(opts), opts.json,
                      lambda r, name: _dumps(_json_result(r, req, name)), _say)
    opts.printed = opts.json
    if code > 1:  # the worst outcome is hostlink's own: keep its code, not "remote failed"
        err = HostlinkError("the worst outcome over %d targets: exit %d" % (len(eps), code))
        err.exit_code = code
        raise err
    return code


def _legacy_exec(opts, ep, req):
    """Run on a first-hostlink daemon (protocol = hlnk): its JSON answer, our exit codes."""
    from .errors import HostlinkError, TimedOut
    _need_token(ep)
    obj = {"version": 1, "type": "exec", "id": _new_id(), "token": ep.token,
           "command": req.command if req.command is not None else " ".join(req.argv),
           "timeout_ms": req.timeout_ms, "env": dict(req.env), "workdir": req.cwd or "/"}
    from . import hlnk
    resp = hlnk.request(ep, obj, _connect_timeout(opts))
    if opts.json:
        _print_json(resp)
        opts.printed = True
    status = resp.get("status")
    if status == "timeout":
        raise TimedOut(resp.get("error_msg") or "timed out")
    if status != "ok":
        from .errors import AuthFailed, BadRequest
        raise {"auth_failed": AuthFailed, "bad_request": BadRequest}.get(status, HostlinkError)(
            resp.get("error_msg") or status)
    if not opts.json:
        sys.stdout.write(resp.get("stdout", ""))
        sys.stderr.write(resp.get("stderr", ""))
    return resp.get("exit_code", 1)


def _detach(opts, ep, req):
    """exec -D: the job id alone on stdout (for id=$(hostlink exec -D ...)), a line for people on stderr."""
    from .session import Session
    _need_token(ep)
    session = Session(ep, _connect_timeout(opts))
    try:
        reply = session.call(req)
    finally:
        session.close()
    if opts.json:
        _print_json(reply)
        opts.printed = True
    else:
        sys.stdout.write(reply["id"] + "\n")
        sys.stdout.flush()
        _say("started job %s on %s; follow it with: hostlink job tail -f %s" % (reply["id"], reply["node"], reply["id"]))
    return 0


def cmd_job(opts, words, environ):
    """hostlink job list | status ID | tail ID [-f] [--stderr] | wait ID | cancel ID [--kill] | rm ID"""
    from .session import Session, raise_for
    from ..wire.protocol import JobRequest
    if not words or words[0] not in ("list", "status", "tail", "wait", "cancel", "rm"):
        raise UsageError("usage: hostlink job list | status ID | tail ID [-f] [--stderr] | wait ID | "
                         "cancel ID [--kill] | rm ID")
    action, rest = words[0], words[1:]
    flags = {w for w in rest if w.startswith("-")}
    ids = [w for w in rest if not w.startswith("-")]
    unknown = flags - {"-f", "--follow", "--stderr", "--kill", "-j", "--json"}
    if unknown:
        raise UsageError("job: unknown flag %s" % sorted(unknown)[0])
    opts.json = opts.json or bool(flags & {"-j", "--json"})
    if action != "list" and len(ids) != 1:
        raise UsageError("job %s needs one job id" % action)
    req = JobRequest(action, ids[0] if ids else "", "stderr" if "--stderr" in flags else "stdout",
                     bool(flags & {"-f", "--follow"}), "--kill" in flags)
    ep = endpoint(opts, environ)
    _need_token(ep)
    session = Session(ep, _connect_timeout(opts))
    try:
        if action in ("tail", "wait"):
            result = session.stream(req)
        else:
            reply = session.call(req)
    finally:
        session.close()
    if action == "tail":
        return 0
    if action == "wait":
        raise_for(result)
        return result.returncode
    if opts.json:
        _print_json(reply)
    elif action == "list":
        for j in reply["jobs"]:
            sys.stdout.write("%-26s %-9s %4s  %s\n" % (j["id"], j["state"], j.get("exit_code", ""), j["command"]))
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
    return 0


def _size_arg(value, name):
    """Bytes from 4096, 4K, 16M or 1G."""
    text = str(value).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if mult > 1 else text
    if not digits.isdigit():
        raise UsageError("%s wants a size such as 4096, 64K or 16M, not %r" % (name, value))
    return int(digits) * mult


class _Output:
    """Relayed output under the first hostlink's -m/--max-stdout/--max-stderr caps, or written to
    files with -O (its output-to-file mode); past a cap output is drained and counted."""

    def __init__(self, caps, capture, to_files):
        self.id = _new_id()
        self.caps = caps
        self.capture = capture
        self.kept = {1: bytearray(), 2: bytearray()}
        self.total = {1: 0, 2: 0}
        self.files, self.paths = {}, {}
        if to_files:
            import tempfile
            base = os.environ.get("HOSTLINK_OUTPUT_DIR") or tempfile.gettempdir()
            for fd, name in ((1, "stdout"), (2, "stderr")):
                self.paths[fd] = os.path.join(base, "hl_%s_%s" % (self.id, name))
                self.files[fd] = open(self.paths[fd], "wb")

    @classmethod
    def for_options(cls, opts):
        if not (opts.max_output or opts.max_stdout or opts.max_stderr or opts.output_to_file):
            return None
        both = _size_arg(opts.max_output, "-m") if opts.max_output else None
        caps = {1: _size_arg(opts.max_stdout, "--max-stdout") if opts.max_stdout else both,
                2: _size_arg(opts.max_stderr, "--max-stderr") if opts.max_stderr else both}
        return cls(caps, opts.json, opts.output_to_file)

    def __call__(self, fd, data):
        seen = self.total[fd]
        self.total[fd] += len(data)
        if self.files:
            self.files[fd].write(data)
            return
        cap = self.caps.get(fd)
        chunk = data if cap is None else data[:max(0, cap - seen)]
        if not chunk:
            return
        if self.capture:
            self.kept[fd] += chunk
        else:
            from .session import _write_all
            _write_all(fd, chunk)

    def finish(self, result, json_out):
        for f in self.files.values():
            f.close()
        result.stdout, result.stderr = bytes(self.kept[1]), bytes(self.kept[2])

    def __bool__(self):
        return True


def _winsize():
    """(rows, cols) of our terminal, or (0, 0)."""
    import fcntl
    import struct
    import termios
    for fd in (0, 1, 2):
        try:
            rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
            return rows, cols
        except OSError:
            continue
    return 0, 0


def _raw_terminal():
    """Put our terminal in raw mode (keys go to the remote terminal); returns the undo, or None."""
    if not os.isatty(0):
        return None
    import termios
    import tty
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, saved)


def cmd_targets(opts, words, environ):
    from . import targets
    rows = targets.listing(opts.targets_file, environ)
    if opts.ping:
        _ping_all(rows, opts, environ)
    if opts.json:
        _print_json(rows)
    else:
        width = max(len(r["name"]) for r in rows)
        wide = max(len(r["where"]) for r in rows)
        for r in rows:
            mark = "*" if r["default"] else " "
            line = "%s %-*s  %-4s  %-*s" % (mark, width, r["name"], r["transport"], wide, r["where"])
            if opts.ping:
                line += "  %s" % r["state"] + ("  %s (up %ds)" % (r["node"], r["uptime_s"])
                                               if r["state"] == "ok" else "")
            sys.stdout.write(line.rstrip() + "\n")
    return 0


def _ping_all(rows, opts, environ):
    """Ping every target at once, with a short connect timeout; adds state, node, uptime_s."""
    import threading
    from .errors import AuthFailed, ConnectFailed, HostlinkError
    from . import targets

    def one(row):
        try:
            if row["name"] == "(local)":
                from .session import Endpoint
                ep = Endpoint(name="(local)", socket=row["where"])
            else:
                ep = targets.find(row["name"], opts.targets_file, environ)
            if not ep.token:
                ep.token = opts.token or environ.get("HOSTLINK_TOKEN", "")
            row["node"], row["uptime_s"] = ping(ep, min(_connect_timeout(opts), 2000))
            row["state"] = "ok"
        except AuthFailed:
            row["state"] = "auth failed"
        except ConnectFailed as exc:
            row["state"] = "tls mismatch" if "fingerprint" in exc.message else "unreachable"
        except HostlinkError as exc:
            row["state"] = "error: %s" % exc.message
    threads = [threading.Thread(target=one, args=(r,)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def cmd_doctor(opts, words, environ):
    from .doctor import check
    ep = endpoint(opts, environ)
    if not ep.socket:
        raise UsageError("doctor checks a Unix socket target; %s is TCP" % ep.where)
    findings = check(ep)
    for f in findings:
        sys.stdout.write(f.line() + "\n")
    return 0 if all(f.ok for f in findings) else 2


def cmd_shim(opts, words, environ):
    from . import shims
    if not words or words[0] not in ("install", "list", "remove"):
        raise UsageError("usage: hostlink shim install|list|remove [NAME...] [--dir DIR]")
    action, names, directory = words[0], words[1:], os.path.dirname(shims.client_path())
    if "--dir" in names:
        i = names.index("--dir")
        if i + 1 >= len(names):
            raise UsageError("--dir needs a directory")
        directory = names[i + 1]
        del names[i:i + 2]
    if action == "list":
        for name in shims.listing(directory):
            sys.stdout.write(name + "\n")
        return 0
    if not names:
        raise UsageError("shim %s needs at least one program name" % action)
    if action == "install":
        for path in shims.install(names, directory):
            sys.stdout.write("%s -> runs %s on the host\n" % (path, os.path.basename(path)))
    else:
        shims.remove(names, directory)
    return 0


def _transfer_args(words, extra=None):
    """(paths, excludes, verify) from cp/put/get arguments; the first hostlink's flags accepted
    (--mkdir and --mode land in ``extra``, for put)."""
    extra = [] if extra is None else extra
    paths, excludes, verify, i = [], [], False, 0
    while i < len(words):
        w = words[i]
        if w == "--exclude" or w.startswith("--exclude="):
            if "=" in w:
                excludes.append(w.split("=", 1)[1])
            elif i + 1 < len(words):
                i += 1
                excludes.append(words[i])
            else:
                raise UsageError("--exclude needs a pattern")
        elif w == "--verify":
            verify = True
        elif w == "--stream":
            pass  # the first hostlink's: streaming is how this one always works
        elif w in ("-r", "-R", "--recursive"):
            raise UsageError("%s is not needed: directories are copied whole" % w)
        elif w == "--mkdir":
            extra.append("--mkdir")
        elif w == "--mode" or w.startswith("--mode="):
            if "=" in w:
                mode = w.split("=", 1)[1]
            elif i + 1 < len(words):
                i += 1
                mode = words[i]
            else:
                raise UsageError("--mode requires an octal argument")
            try:
                int(mode, 8)
            except ValueError:
                raise UsageError("--mode requires an octal argument, not %r" % mode)
            extra += ["--mode", mode]
        elif w.startswith("-") and w != "-":
            raise UsageError("unknown transfer flag %s (known: --exclude GLOB, --verify)" % w)
        else:
            paths.append(w)
        i += 1
    if len(paths) != 2:
        raise UsageError("a transfer takes two paths: SRC DST")
    return paths, excludes, verify


def _transfer(opts, environ, direction, remote_target, local, remote, excludes, verify, extra=()):
    from . import transfer
    from .session import Session, raise_for
    from ..wire.protocol import Exec
    if remote_target and remote_target != "host":
        opts.target = remote_target
    ep = endpoint(opts, environ)
    _need_token(ep)
    fds_mode = bool(ep.socket)
    def factory(action, args, mode=None):
        return Exec(argv=tuple(args), xfer=action, mode=mode or ("fds" if fds_mode else "relay"),
                    timeout_ms=_int(opts.timeout, "-T") if opts.timeout else 0)
    info = None
    if direction == "get":
        info = transfer.remote_stat(lambda: Session(ep, _connect_timeout(opts)), factory, remote,
                                    verify, excludes)
        transfer.check_space(local, info[3])
    session = Session(ep, _connect_timeout(opts))
    try:
        if direction == "put":
            result = transfer.put(session, factory, local, remote, excludes, verify, fds_mode, extra)
        elif info[0] == "file" and fds_mode and not excludes:
            result = transfer.get_file(session, factory, remote, local, info, verify)
        else:
            result = transfer.get(session, factory, remote, local, excludes, verify, fds_mode)
    finally:
        session.close()
    raise_for(result)
    if result.returncode:
        raise HostlinkError("the transfer failed on the host (see the message above)")
    return 0


def cmd_put(opts, words, environ, verify_always=False):
    extra = []
    (local, remote), excludes, verify = _transfer_args(words, extra)
    verify = verify or verify_always or opts.verify
    return _transfer(opts, environ, "put", None, local, remote, excludes, verify, extra)


def cmd_get(opts, words, environ, verify_always=False):
    (remote, local), excludes, verify = _transfer_args(words)
    verify = verify or verify_always or opts.verify
    return _transfer(opts, environ, "get", None, local, remote, excludes, verify)


def cmd_put_stream(opts, words, environ):
    """The first hostlink's put-stream: a put with SHA-256 verification."""
    return cmd_put(opts, words, environ, verify_always=True)


def cmd_get_stream(opts, words, environ):
    """The first hostlink's get-stream: a get with SHA-256 verification."""
    return cmd_get(opts, words, environ, verify_always=True)


def cmd_cp(opts, words, environ):
    from . import targets
    from .transfer import split_remote
    (src, dst), excludes, verify = _transfer_args(words)
    path = targets.search_path(opts.targets_file, environ)
    names = set(targets.load(path)) if path else set()
    s_target, s_path = split_remote(src, names)
    d_target, d_path = split_remote(dst, names)
    if (s_target is None) == (d_target is None):
        raise UsageError("cp wants one side on the host (host:PATH or TARGET:PATH) and one here")
    if src == "-" or dst == "-":
        return _tar_stream(opts, environ, s_target or d_target, s_path or d_path,
                           "send" if dst == "-" else "receive", excludes)
    if d_target:
        return _transfer(opts, environ, "put", d_target, src, d_path, excludes, verify)
    return _transfer(opts, environ, "get", s_target, dst, s_path, excludes, verify)


def _tar_stream(opts, environ, target, path, action, excludes):
    """cp with '-': the tar stream itself on our stdin or stdout."""
    from .session import Session, raise_for
    from ..wire.protocol import Exec
    if target != "host":
        opts.target = target
    ep = endpoint(opts, environ)
    _need_token(ep)
    args = (path,) + tuple(a for g in excludes for a in ("--exclude", g))
    session = Session(ep, _connect_timeout(opts))
    try:
        result = session.exec(Exec(argv=args, xfer=action, mode="fds" if ep.socket else "relay"))
    finally:
        session.close()
    raise_for(result)
    return result.returncode


def cmd_df(opts, words, environ):
    from .session import Session
    from ..wire.protocol import Exec
    if len(words) != 1:
        raise UsageError("df takes one path on the host")
    ep = endpoint(opts, environ)
    _need_token(ep)
    session = Session(ep, _connect_timeout(opts))
    try:
        r = session.exec(Exec(argv=(words[0],), xfer="df", mode="relay"), capture=True)
    finally:
        session.close()
    if r.returncode:
        raise HostlinkError(r.stderr.decode(errors="replace").strip())
    where, free, total = r.stdout.decode().rsplit(None, 2)
    if opts.json:
        _print_json({"path": words[0], "filesystem_path": where, "free_bytes": int(free),
                     "total_bytes": int(total)})
    else:
        note = "" if where == words[0].rstrip("/") else ", the nearest existing ancestor of %s" % words[0]
        sys.stdout.write("%s free of %s bytes (%s of %s) at %s%s\n"
                         % (free, total, _size(int(free)), _size(int(total)), where, note))
    return 0


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024.0
