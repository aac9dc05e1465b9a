"""The ``hostlink`` command line: parse, dispatch to the command's module, map errors to exit codes.

Options are parsed by hand: ``getopt`` and ``argparse`` pull in ``gettext`` and ``re``, which
would more than double the client's start-up time (measured in bench/). Under the name
``hostlink-cli`` the exit codes are the first hostlink's: the remote status verbatim, 124 on
timeout, 125 when hostlink itself failed. Under any other name the client is a shim (shims.py).
Nothing imports this module; the commands are imported by name, only the one that runs.
"""

import posix  # os without its path and collections modules: 1.6 ms less at every start
import sys

from .. import __version__
from . import CLIENT_NAMES
from .errors import HostlinkError, Interrupted, TransferFailed, UsageError

# option -> (destination, takes a value); long and short spellings of the first hostlink too.
OPTIONS = {
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
    "--ping": ("ping", False), "-P": ("ping", False),
    "--fingerprint": ("fingerprint", True),
    "--plain": ("plain", False),
    "-m": ("max_output", True), "--max-output": ("max_output", True),
    "--max-stdout": ("max_stdout", True), "--max-stderr": ("max_stderr", True),
    "-O": ("output_to_file", False), "--output-to-file": ("output_to_file", False),
    "--verify": ("verify", False),
    "--no-wait": ("no_wait", False),
    "-q": ("quiet", False), "--quiet": ("quiet", False),
    "-h": ("help", False), "--help": ("help", False),
    "-V": ("version", False), "--version": ("version", False),
}
# Options that may also follow ``exec`` (before the command words: after the first command word
# everything belongs to the command, so ``exec ls --help`` runs ls --help, as ssh and docker do).
EXEC_OPTIONS = ("-w", "--workdir", "-e", "--env", "-T", "--timeout", "-j", "--json",
                 "-x", "--exit-status", "--argv", "--relay", "--tty", "-D", "--detach",
                 "-m", "--max-output", "--max-stdout", "--max-stderr", "-O", "--output-to-file",
                 "--no-wait", "-h", "--help")
HELP_FLAGS = ("-h", "--help")

class Options:
    """The parsed command line: input only, never written by a command."""

    def __init__(self):
        self.socket = self.token = self.target = self.address = self.targets_file = None
        self.timeout = self.connect_timeout = self.workdir = None
        self.env = []
        self.json = self.exit_status = self.argv = self.relay = self.help = self.version = False
        self.all = self.ping = self.plain = self.tty = self.detach = self.output_to_file = False
        self.max_output = self.max_stdout = self.max_stderr = None
        self.verify = self.no_wait = self.quiet = False
        self.fingerprint = ""
        self.compat = False  # started as hostlink-cli: the first hostlink's codes and answers
        self.command = ""


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
        spec = OPTIONS.get(name)
        if spec is None or (allowed is not None and name not in allowed):
            if allowed is not None:
                break
            from .help import unknown
            raise unknown("option", name, OPTIONS, "hostlink --help")
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


# command -> (module, function); each module is imported only when its command runs.
COMMANDS = {
    "exec": ("exec", "run"), "ping": (None, "ping"),  # None: in this module
    "targets": ("targets", "run"), "doctor": ("doctor", "run"), "shim": ("shims", "run"),
    "job": ("jobs", "run"), "cp": ("transfer", "cp"), "put": ("transfer", "put"),
    "get": ("transfer", "get"), "df": ("transfer", "df"),
    "put-stream": ("transfer", "put_stream"), "get-stream": ("transfer", "get_stream"),
    "help": ("help", "run"),
}
# Commands that read their own arguments (the others take options only).
OWN_ARGUMENTS = ("shim", "job", "cp", "put", "get", "df", "put-stream", "get-stream", "help")


def handler(name):
    """The function that runs command ``name``; UsageError for an unknown one."""
    if name not in COMMANDS:
        from .help import unknown
        raise unknown("command", name, [c for c in COMMANDS if "-stream" not in c])
    module, function = COMMANDS[name]
    if module is None:
        return ping
    return getattr(__import__("%s.%s" % (__package__, module), fromlist=[function]), function)


def ping(opts, words, environ, warnings):
    """hostlink ping. Here, not in a module of its own: one module less to load (ping is the
    health check scripts run in loops)."""
    from . import session
    ep = session.endpoint(opts, environ, warnings)
    node, uptime = session.ping(ep, session.connect_timeout(opts))
    from . import output
    output.pong(node, uptime, opts.json)
    return 0


def run(argv, environ, compat=False):
    """Run the command line ``argv``; returns the exit code."""
    opts = Options()
    opts.compat = compat
    # Its client had no line to wait in: a full daemon answers busy at once, as it did.
    opts.no_wait = compat
    warnings = []  # lines worth telling but not fatal (targets.conf); told at the end
    try:
        code = dispatch(argv, opts, environ, warnings)
        if code is None:
            return 0 if opts.help or opts.version else 7
        _tell(warnings)
        if compat and opts.json and opts.command in ("exec", "ping"):
            return 0  # its -j exec: the command's status is exit_code in the JSON, not ours
        if compat or opts.exit_status:
            return code
        return 0 if code == 0 else 1
    except HostlinkError as exc:
        _tell(warnings)
        from . import output
        if opts.json and not exc.answered:
            output.error_json(exc, compat)
        if exc.message:
            output.say(exc.message)
        if compat and opts.json and exc.remote and opts.command in ("exec", "ping"):
            return 0  # its -j exec and ping: the daemon answered, the status is in the JSON
        return exit_code(exc, compat, opts.exit_status)


def dispatch(argv, opts, environ, warnings):
    """Parse ``argv`` into ``opts`` and run its command; its exit code, or None when only the
    version or the usage was printed."""
    rest = parse(argv, opts)
    if opts.version or opts.help or not rest:
        from . import output
        if opts.version:
            output.version(__version__)
        else:  # hostlink --help [COMMAND], or nothing at all (then on stderr, exit 7)
            output.usage(opts.help, rest[0] if rest else None)
        return None
    name, words = rest[0], rest[1:]
    opts.command = name
    if name == "exec":
        words = parse(words, opts, EXEC_OPTIONS)
    elif name not in COMMANDS:
        handler(name)  # raises, with the nearest command
    elif name in OWN_ARGUMENTS:
        words = _own_flags(name, words, opts)
    elif words:
        words = parse(words, opts)
        if words:
            raise UsageError("%s takes no argument %r" % (name, words[0]))
    if opts.help:  # CMD --help: printed here, never sent to the host
        from . import output
        output.usage(True, name)
        return None
    return handler(name)(opts, words, environ, warnings)


def _own_flags(name, words, opts):
    """The words of a command that reads its own, less what main reads for it (before any ``--``):
    -h/--help, job's -x (wait with the job's own status, as hostlink -x job wait does), and the
    transfers' -q."""
    head = words[:words.index("--")] if "--" in words else words
    if any(w in HELP_FLAGS for w in head):
        opts.help = True
    lifted = {"job": ("-x", "--exit-status"), "cp": ("-q", "--quiet"), "put": ("-q", "--quiet"),
              "get": ("-q", "--quiet")}.get(name.replace("-stream", ""), ())
    if any(w in lifted for w in head):
        setattr(opts, "exit_status" if name == "job" else "quiet", True)
        words = [w for w in head if w not in lifted] + words[len(head):]
    return words


def exit_code(exc, compat, exit_status):
    """The exit code for ``exc``: ours, the first hostlink's (compat), or ssh's (-x)."""
    if isinstance(exc, Interrupted):  # 128+N in every mode, as a shell reports Ctrl-C (130)
        return exc.exit_code
    if compat and isinstance(exc, TransferFailed):  # its client's own failure: 125
        return 125
    if compat:  # the first hostlink's codes: 124 timeout, 1 for a missing job, 125 itself
        return {5: 124, 1: 1}.get(exc.exit_code, 125)
    if exit_status:  # 127 for a program not found, as a shell says it
        return exc.shell_status or (124 if exc.exit_code == 5 else 255)
    return exc.exit_code


def _tell(warnings):
    if warnings:
        from . import output
        for line in warnings:
            output.say(line)


def run_shim(path, argv, environ):
    """Started as a shim at ``path``: run its program with ``argv`` on the host, exactly (paths
    in HOSTLINK_PATH_MAP mapped), with the shim's timeout, and exit with the program's status."""
    from . import exec as exec_command, shimrun
    opts = Options()
    opts.argv = opts.exit_status = True
    try:
        opts.timeout = shimrun.timeout(path, environ)
        words = shimrun.words(path, argv, environ)
        return exec_command.run(opts, words, environ, [])
    except HostlinkError as exc:
        if exc.message:
            from . import output
            output.say(exc.message)
        return exit_code(exc, False, True)


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
            code = run_shim(sys.argv[0], sys.argv[1:], environ)
        else:
            code = run(sys.argv[1:], environ, compat)
    except KeyboardInterrupt as exc:  # Ctrl-C, or errors.Leave on signal N: 128+N, as a shell says
        code = 128 + getattr(exc, "signum", 2)
    except OSError as exc:  # a local file or descriptor problem: one line, never a traceback
        from . import output
        output.say("%s%s" % (exc.strerror or exc, ": %s" % exc.filename if exc.filename else ""))
        code = 7
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    # Everything is written and every descriptor of ours is closed: skip the interpreter's
    # teardown (module and object finalization), 1-2 ms of every call (bench/).
    posix._exit(code)
