"""The ``hostlink`` command line: parse, run, print, exit. The only module of the client that prints.

Options are parsed by hand: ``getopt`` and ``argparse`` pull in ``gettext`` and ``re``, which
would more than double the client's start-up time (measured in bench/). Under the name
``hostlink-cli`` the exit codes are the first hostlink's: the remote status verbatim, 124 on
timeout, 125 when hostlink itself failed.
"""

import posix  # os without its path and collections modules: 1.6 ms less at every start
import sys

from .. import __version__
from .errors import HostlinkError, UsageError

DEFAULT_SOCKET = "/run/hostlink/hostlink.sock"
# Names under which the client is itself; under any other name it is a shim (shims.py).
CLIENT_NAMES = ("hostlink", "hostlink-cli", "__main__.py", "-c")

# option -> (destination, takes a value); long and short spellings of the first hostlink too.
_OPTIONS = {
    "-s": ("socket", True), "--socket": ("socket", True),
    "-k": ("token", True), "--token": ("token", True),
    "-t": ("target", True), "--target": ("target", True),
    "-a": ("address", True), "--address": ("address", True),
    "-T": ("timeout", True), "--timeout": ("timeout", True),
    "-C": ("connect_timeout", True), "--connect-timeout": ("connect_timeout", True),
    "-F": ("targets_file", True), "--targets-file": ("targets_file", True),
    "-w": ("workdir", True), "--workdir": ("workdir", True),
    "-e": ("env", True), "--env": ("env", True),
    "-j": ("json", False), "--json": ("json", False),
    "-x": ("exit_status", False), "--exit-status": ("exit_status", False),
    "--argv": ("argv", False),
    "--relay": ("relay", False),
    "--tty": ("tty", False),
    "-D": ("detach", False), "--detach": ("detach", False),
    "--all": ("all", False),
    "--ping": ("ping", False),
    "--fingerprint": ("fingerprint", True),
    "--plain": ("plain", False),
    "-m": ("max_output", True), "--max-output": ("max_output", True),
    "--max-stdout": ("max_stdout", True), "--max-stderr": ("max_stderr", True),
    "-O": ("output_to_file", False), "--output-to-file": ("output_to_file", False),
    "--verify": ("verify", False),
    "-h": ("help", False), "--help": ("help", False),
    "-V": ("version", False), "--version": ("version", False),
}
# Options that may also follow ``exec`` (before the command words).
_EXEC_OPTIONS = ("-w", "--workdir", "-e", "--env", "-T", "--timeout", "-j", "--json",
                 "-x", "--exit-status", "--argv", "--relay", "--tty", "-D", "--detach",
                 "-m", "--max-output", "--max-stdout", "--max-stderr", "-O", "--output-to-file")

USAGE = """\
usage: hostlink [OPTIONS] COMMAND [ARGS]

Run commands on the host from inside a container, through hostlinkd.

commands:
  exec CMD...        run CMD with the host's shell (words are joined with spaces, as ssh does)
  exec --argv PROG ARG...
                     run PROG with exactly these arguments, no shell
  ping               check the daemon: prints [node] pong - uptime Xs
  targets [--ping]   list the targets of targets.conf (-j for JSON); --ping checks each
  doctor             check the socket, its permissions, the daemon and the token, with fixes
  cp SRC DST         copy files or directories, one side host:PATH (or TARGET:PATH, or - for a
                     tar stream): symlinks, modes, times and empty directories kept
                     [--exclude GLOB]... [--verify]
  put LOCAL REMOTE   the same as cp LOCAL host:REMOTE;  get REMOTE LOCAL: cp host:REMOTE LOCAL
  df PATH            free space on the host's filesystem that holds PATH
  exec -D CMD        start CMD as a detached job: prints its id at once
  job list | status ID | tail ID [-f] [--stderr] | wait ID | cancel ID [--kill] | rm ID
                     detached jobs (wait exits as exec would have)
  shim install NAME... [--dir DIR]
                     make NAME a link to this client: run as NAME, it runs NAME on the host
                     with exactly its arguments (shim list, shim remove NAME manage them)

options:
  -s, --socket PATH        Unix socket (env HOSTLINK_SOCKET, default %s)
  -k, --token TOKEN        token (env HOSTLINK_TOKEN); must match auth_token in hostlink.conf
  -t, --target NAME        a target from targets.conf (env HOSTLINK_TARGET); a,b,c runs on each
      --all                run on every target of targets.conf, lines prefixed [name]
  -a, --address HOST:PORT  a daemon on TCP with no targets entry (with --fingerprint, or --plain)
  -F, --targets-file PATH  targets file (env HOSTLINK_TARGETS)
  -w, --workdir DIR        working directory on the host
  -e, --env NAME=VALUE     set a variable for the command (repeatable)
  -T, --timeout MS         kill the command's process group after MS milliseconds
  -C, --connect-timeout MS give up connecting after MS milliseconds (default 5000)
  -j, --json               print one JSON object with stdout, stderr and exit_code
  -x, --exit-status        exit with the remote command's own status, as ssh does
  -m, --max-output SIZE    keep at most SIZE (4K, 16M) of each stream, drain the rest (also
                           --max-stdout, --max-stderr); -j reports *_truncated
  -O, --output-to-file     write the output to files (hl_ID_stdout, hl_ID_stderr in
                           $HOSTLINK_OUTPUT_DIR or /tmp) and report their paths
      --tty                give the command a pseudo-terminal on the host (as ssh -t), relayed
      --relay              stream through the connection instead of passing this process's
                           stdin/stdout/stderr to the command (always so with -j and TCP)
  -V, --version            print the version
  -h, --help               print this help

exit codes: 0 ok, 1 the remote command failed (its code is exit_code in -j), 2 cannot connect,
3 authentication failed, 4 server busy (max_concurrent reached; retry later), 5 timeout (the
remote process group was killed), 6 denied by policy, 7 client error (bad arguments, targets).
With -x: the remote status itself, 124 on timeout, 255 when hostlink failed.
""" % DEFAULT_SOCKET


class Options:
    """Parsed command line."""

    def __init__(self):
        self.socket = self.token = self.target = self.address = self.targets_file = None
        self.timeout = self.connect_timeout = self.workdir = None
        self.env = []
        self.json = self.exit_status = self.argv = self.relay = self.help = self.version = False
        self.all = self.ping = self.plain = self.tty = self.detach = self.output_to_file = False
        self.max_output = self.max_stdout = self.max_stderr = None
        self.verify = False
        self.fingerprint = ""
        self.printed = False  # -j output already written: errors add no second object
        self.mapped_from = ""  # the container directory that HOSTLINK_PATH_MAP translated


def parse(args, opts, allowed=None):
    """Options up to the first word that is not one; returns the remaining words.

    With ``allowed`` (after ``exec``), the first dash word that is not allowed begins the command.
    """
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1:]
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
        else:
            name, value = arg[:2], arg[2:]
            eq = "=" if value else ""
        spec = _OPTIONS.get(name)
        if spec is None or (allowed is not None and name not in allowed):
            if allowed is not None:
                break
            raise UsageError("unknown option %s (see hostlink --help)" % name)
        dest, takes = spec
        if takes:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError("option %s needs a value" % name)
                value = args[i]
            if dest == "env":
                opts.env.append(value)
            else:
                setattr(opts, dest, value)
        elif eq and name.startswith("--"):
            raise UsageError("option %s takes no value" % name)
        else:
            setattr(opts, dest, True)
            if value:  # a cluster of short flags such as -jx
                args = args[:i + 1] + ["-" + value] + args[i + 1:]
        i += 1
    return args[i:]


def _int(value, name, low=0):
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError("%s must be a whole number of milliseconds, not %r" % (name, value))
    if n < low:
        raise UsageError("%s must be at least %d, not %d" % (name, low, n))
    return n


def endpoint(opts, environ):
    """The Endpoint the options and environment name; UsageError for an unknown target."""
    from .session import Endpoint
    token = opts.token if opts.token is not None else environ.get("HOSTLINK_TOKEN")
    if opts.socket:
        ep = Endpoint(socket=opts.socket)
    elif opts.address:
        host, _, port = opts.address.rpartition(":")
        ep = Endpoint(name=opts.address, address=host.strip("[]") or opts.address,
                      port=_int(port, "-a port", 1) if host else 9876,
                      tls="off" if opts.plain else "required", fingerprint=opts.fingerprint)
    else:
        name = opts.target or environ.get("HOSTLINK_TARGET")
        if name:
            from . import targets
            ep = targets.find(name, opts.targets_file, environ)
        else:
            ep = Endpoint(socket=environ.get("HOSTLINK_SOCKET") or DEFAULT_SOCKET)
    if token is not None:
        ep.token = token
    return ep


def _request(opts, words, environ):
    from ..wire.protocol import Exec
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
    if opts.workdir and not opts.workdir.startswith("/"):
        raise UsageError("-w wants an absolute path on the host, got %r" % opts.workdir)
    if environ.get("HOSTLINK_PATH_MAP"):
        from .commands import _cwd, _mapped_workdir
        opts.mapped_from = opts.workdir or _cwd()
        opts.workdir = _mapped_workdir(opts.workdir, environ)
    if "TERM" in environ and posix.isatty(1) and not opts.json:
        env.insert(0, ("TERM", environ["TERM"]))
    return Exec(command=command, argv=argv, cwd=opts.workdir or "", env=tuple(env),
                timeout_ms=0, mode="relay" if opts.json else "fds")


def cmd_exec(opts, words, environ):
    from .session import Session, check_timeout, raise_for
    req = _request(opts, words, environ)
    if opts.all or "," in (opts.target or environ.get("HOSTLINK_TARGET") or ""):
        from .commands import _fanout, _fanout_names
        return _fanout(opts, environ, _fanout_names(opts, environ), req)
    ep = endpoint(opts, environ)
    if ep.protocol == "hlnk":
        from .commands import _legacy_exec
        return _legacy_exec(opts, ep, req)
    timeout = _int(opts.timeout, "-T") if opts.timeout is not None else ep.timeout_ms
    if opts.detach:
        from .commands import _detach
        return _detach(opts, ep, _replace(req, timeout_ms=timeout, mode="relay", detach=True))
    output = None
    if opts.max_output or opts.max_stdout or opts.max_stderr or opts.output_to_file:
        from .commands import _Output
        output = _Output.for_options(opts)
    fds = ep.socket and not (opts.relay or opts.tty)
    req = _replace(req, timeout_ms=timeout, mode="fds" if fds else "relay")
    restore = None
    if opts.tty:
        from .commands import _raw_terminal, _winsize
        rows, cols = _winsize()
        req = _replace(req, tty=True, rows=rows, cols=cols)
    _need_token(ep)
    session = Session(ep, _connect_timeout(opts))
    session.on_stuck = lambda: _say("the signal waits behind input the command has not read; "
                                    "press Ctrl-C again to leave (the command is then ended)")
    session.on_wait = lambda w: _say("waiting for approval %s on %s: %s (up to %d s)"
                                     % (w.id, w.node, w.text, w.timeout_ms // 1000))
    if opts.tty:
        restore = _raw_terminal()
    try:
        if output:
            result = session.exec(req, out=output)
            output.finish(result, opts.json)
        else:
            result = session.exec(req, capture=opts.json)
    except HostlinkError as exc:
        if opts.mapped_from and req.cwd and req.cwd in exc.message:
            exc.message += " (it is %s in this container, mapped by HOSTLINK_PATH_MAP)" % opts.mapped_from
        raise
    finally:
        if restore:
            restore()
        session.close()
    warning = check_timeout(result, timeout)
    if warning:
        _say("note: " + warning)
    if opts.json:
        _print_json(_json_result(result, req, output=output))
        opts.printed = True
    elif output and output.paths:
        _say("output in %s and %s" % (output.paths[1], output.paths[2]))
    raise_for(result)
    return result.returncode


def _replace(req, **changes):
    fields = {n: getattr(req, n) for n in req.__slots__}
    fields.update(changes)
    return type(req)(**fields)


def ping(ep, connect_timeout_ms):
    """(node, uptime_s) of the daemon at ``ep``; raises HostlinkError."""
    _need_token(ep)
    if ep.protocol == "hlnk":
        from . import hlnk
        resp = hlnk.request(ep, {"version": 1, "type": "ping", "id": _new_id(), "token": ep.token},
                              connect_timeout_ms)
        if resp.get("status") != "ok":
            from .errors import AuthFailed
            raise AuthFailed(resp.get("error_msg") or resp.get("status"))
        return resp.get("node", ""), resp.get("uptime_s", 0)
    from .session import Session
    session = Session(ep, connect_timeout_ms)
    try:
        r = session.ping()
    finally:
        session.close()
    return r.node, r.uptime_s


def cmd_ping(opts, words, environ):
    ep = endpoint(opts, environ)
    node, uptime = ping(ep, _connect_timeout(opts))
    if opts.json:
        _print_json({"version": 1, "id": _new_id(), "node": node, "status": "ok",
                     "uptime_s": uptime})
    else:
        sys.stdout.write("[%s] pong - uptime %ds\n" % (node, uptime))
    return 0


def _need_token(ep):
    if not ep.token:
        from .errors import AuthFailed
        raise AuthFailed("no token: set HOSTLINK_TOKEN or pass -k; it must match auth_token in "
                         "hostlink.conf on the host")


def _connect_timeout(opts):
    return _int(opts.connect_timeout, "-C", 1) if opts.connect_timeout is not None else 5000


def _new_id():
    return posix.urandom(4).hex()


def _text(data):
    """(text, exact base64 or None): non-UTF-8 bytes become U+FFFD in the text."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        import base64
        return data.decode("utf-8", "replace"), base64.b64encode(data).decode("ascii")


def _json_result(r, req, target=None, output=None):
    out = {"version": 1, "id": output.id if output else _new_id(), "node": r.node,
           "status": "timeout" if r.timed_out else "ok",
           "exit_code": -2 if r.timed_out else r.returncode}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if output and output.paths:
            out[name + "_file"] = output.paths[fd]
            continue
        text, exact = _text(getattr(r, name) or b"")
        out[name] = text
        if exact is not None:
            out[name + "_base64"] = exact
    for fd, name in ((1, "stdout"), (2, "stderr")):
        total = output.total[fd] if output else len(getattr(r, name) or b"")
        out[name + "_truncated"] = bool(output and not output.paths and total > len(getattr(r, name) or b""))
        out[name + "_original_bytes"] = total
    out.update(duration_ms=r.duration_ms, signal=r.signal, timed_out=r.timed_out)
    if r.timed_out:
        out["error_msg"] = "command timed out after %d ms and was killed" % r.timeout_ms
    if target is not None:
        out["target"] = target
    return out


def _dumps(obj):
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


def _print_json(obj):
    sys.stdout.write(_dumps(obj) + "\n")
    sys.stdout.flush()


def _warnings():
    targets = sys.modules.get("hostlink.client.targets")
    for line in targets.warnings if targets else ():
        _say(line)
    if targets:
        del targets.warnings[:]


def _say(message):
    sys.stderr.write("hostlink: %s\n" % message)
    sys.stderr.flush()


def run_shim(prog, argv, environ):
    """Started as a shim: run ``prog argv...`` on the host, exactly, and exit with its status."""
    opts = Options()
    opts.argv = opts.exit_status = True
    try:
        return cmd_exec(opts, [prog] + list(argv), environ)
    except HostlinkError as exc:
        _say(exc.message)
        return 124 if exc.exit_code == 5 else 255


# The commands of the hot path live here; the others in commands.py, loaded when used.
COMMANDS = {"exec": cmd_exec, "ping": cmd_ping}
COLD_COMMANDS = ("targets", "doctor", "shim", "job", "cp", "put", "get", "df", "put-stream",
                 "get-stream")


def run(argv, environ, compat=False):
    """Run the command line ``argv``; returns the exit code."""
    opts = Options()
    try:
        rest = parse(argv, opts)
        if opts.version:
            sys.stdout.write("hostlink %s\n" % __version__)
            return 0
        if opts.help or not rest:
            (sys.stdout if opts.help else sys.stderr).write(USAGE)
            return 0 if opts.help else 7
        name, words = rest[0], rest[1:]
        if name == "exec":
            words = parse(words, opts, _EXEC_OPTIONS)
        elif name in ("shim", "job", "cp", "put", "get", "df", "put-stream", "get-stream"):
            pass  # their own arguments
        elif words:
            words = parse(words, opts)
            if words:
                raise UsageError("%s takes no argument %r" % (name, words[0]))
        handler = COMMANDS.get(name)
        if name in COLD_COMMANDS:
            from . import commands
            handler = getattr(commands, "cmd_" + name.replace("-", "_"))
        if handler is None:
            raise UsageError("unknown command %r (try exec, ping, targets or doctor)" % name)
        code = handler(opts, words, environ)
        _warnings()
        if compat or opts.exit_status:
            return code
        return 0 if code == 0 else 1
    except HostlinkError as exc:
        _warnings()
        if opts.json and not opts.printed:
            _print_json({"version": 1, "id": _new_id(), "node": "", "status": exc.status,
                         "exit_code": -1, "stdout": "", "stderr": "", "stdout_truncated": False,
                         "stderr_truncated": False, "duration_ms": 0, "error_msg": exc.message})
        _say(exc.message)
        if compat:  # the first hostlink's codes: 124 timeout, 1 for a missing job, 125 itself
            return {5: 124, 1: 1}.get(exc.exit_code, 125)
        if opts.exit_status:
            return 124 if exc.exit_code == 5 else 255
        return exc.exit_code


def _environ():
    """The environment as str, as os.environ would give it, from posix.environ's bytes."""
    return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in posix.environ.items()}


def _open_std_fds():
    """Give a closed stdin, stdout or stderr /dev/null, before any socket can take its number
    (a socket on fd 0 would be read as stdin, and passed to the command as one)."""
    for fd in (0, 1, 2):
        try:
            posix.fstat(fd)
        except OSError:
            new = posix.open("/dev/null", posix.O_RDWR)
            if new != fd:  # a lower number was closed too; the loop fills them in order
                posix.dup2(new, fd)
                posix.close(new)


def main():
    """Run the client with sys.argv and end the process with its exit code."""
    _open_std_fds()
    prog = sys.argv[0].rsplit("/", 1)[-1]
    environ = _environ()
    compat = prog == "hostlink-cli"
    try:
        if prog not in CLIENT_NAMES and not prog.startswith(("hostlink", "python")):
            code = run_shim(prog, sys.argv[1:], environ)
        else:
            code = run(sys.argv[1:], environ, compat)
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:  # a local file or descriptor problem: one line, never a traceback
        _say("%s%s" % (exc.strerror or exc, ": %s" % exc.filename if exc.filename else ""))
        code = 7
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    # Everything is written and every descriptor of ours is closed: skip the interpreter's
    # teardown (module and object finalization), 1-2 ms of every call (bench/).
    posix._exit(code)
