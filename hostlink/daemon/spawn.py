"""Starting, signalling and reaping commands for hostlinkd.

Every command gets its own session and process group (so one killpg reaches all it started),
a clean environment built here (never the daemon's own), default signal dispositions and an
empty signal mask. A shell string is not put in the shell's argv: it travels in an environment
variable that the shell unsets before running it, so ``pgrep -f`` on the host never matches our
own shell and the text is not inherited by what the command starts.

The daemon is a child subreaper and reaps every child itself (``Reaper``), so what a command
orphans is reaped too: no zombies even where PID 1 reaps nothing.
"""

import os
import signal
import subprocess
import sys

from .errors import BadCwd, BadRequest, SpawnFailed

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Environment names a client may never set: they change what runs before the command does.
DENIED_ENV = frozenset((
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG_OUTPUT", "LD_PROFILE",
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "HOSTLINK_COMMAND",
))
_COMMAND_VAR = "HOSTLINK_COMMAND"
# Runs the command from the environment: $0 stays the shell, the text never sits in argv. The
# space before it keeps a command that starts with "-" (exec -- --help) from being eval's option
# (dash has no "eval --").
_STUB = '__hostlink_cmd=$%s; unset %s; eval " $__hostlink_cmd"' % (_COMMAND_VAR, _COMMAND_VAR)
_PR_SET_CHILD_SUBREAPER = 36
# The folder that holds the hostlink package: helper programs find it through PYTHONPATH.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def become_subreaper():
    """Make orphaned descendants our children, so that we reap them (Linux 3.4+)."""
    import ctypes  # here: job runners import this module and never need it
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def clean_signal_state():
    """Unblock every signal and set inherited ignores back to default, so children start clean.

    SIGPIPE and SIGXFSZ stay ignored in the daemon (a client that hangs up must not kill it);
    Popen(restore_signals=True) gives children their defaults back.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ):
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # signals the runtime reserves (32, 33 under glibc) cannot be set


def user_env(user):
    """HOME, USER, LOGNAME and SHELL as a login would set them for ``user`` (a pwd entry)."""
    return {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}


def build_env(cfg, user, client_env):
    """The command's environment: a clean base, then what the client asked for (policy.py
    has already refused the names it may not set)."""
    env = {"PATH": DEFAULT_PATH, "SHELL": cfg.shell, "LANG": os.environ.get("LANG", "C.UTF-8")}
    env.update(user_env(user))
    env.update(client_env)
    return env


def build_argv(cfg, request, env, cwd):
    """The argv to execute for ``request`` (shell string or exact argv) in directory ``cwd``."""
    if request.argv is not None:
        if not request.argv:
            raise BadRequest("empty argv: nothing to run")
        argv = list(request.argv)
    else:
        if not request.command.strip():
            raise BadRequest("empty command: a command is required; nothing was run")
        env[_COMMAND_VAR] = request.command
        argv = [cfg.shell, "-c", _STUB]
    if cfg.namespace_pid:
        # Sidecar: enter the host's namespaces. nsenter opens --wd before it enters them, so the
        # directory is named through the target's root, which /proc shows us (pid=host).
        argv = ["nsenter", "-t", str(cfg.namespace_pid), "-m", "-u", "-n", "-i",
                "--wd=" + host_path(cfg, cwd), "--"] + argv
    return argv


def host_path(cfg, path):
    """``path`` as the daemon sees it: through /proc/PID/root when commands enter a host pid."""
    return "/proc/%d/root%s" % (cfg.namespace_pid, path) if cfg.namespace_pid else path


def working_dir(cfg, request, user, default=""):
    """The directory the command runs in: the one asked for, else ``default``, else the user's
    home, else /."""
    cwd = request.cwd or default
    if cwd:
        if not os.path.isdir(host_path(cfg, cwd)):
            raise BadCwd("working directory %s does not exist on the host" % cwd)
        return cwd
    return user.pw_dir if os.path.isdir(host_path(cfg, user.pw_dir)) else "/"


def _controlling_tty():
    # In the child, after setsid: make the pseudo-terminal on fd 0 its controlling terminal.
    import fcntl
    import termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn(cfg, request, user, cwd, stdin, stdout, stderr, tty=False):
    """Start ``request`` as ``user`` in ``cwd`` on the given descriptors; returns the Popen.

    With ``tty`` the descriptors are a pseudo-terminal that becomes the command's controlling
    terminal (a preexec hook: hostlinkd is single-threaded, so it is safe here).
    """
    env = build_env(cfg, user, request.env)
    argv = build_argv(cfg, request, env, cwd)
    kw = as_user(user)
    if tty:
        kw["preexec_fn"] = _controlling_tty
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=None if cfg.namespace_pid else cwd,
            env=env, close_fds=True, start_new_session=True, restore_signals=True, **kw)
    except FileNotFoundError:
        raise SpawnFailed("%s: command not found on the host" % argv[0], 127) from None
    except PermissionError as exc:
        raise SpawnFailed("%s: %s" % (argv[0], exc.strerror), 126) from None
    except OSError as exc:
        raise SpawnFailed("cannot start %s: %s" % (argv[0], exc.strerror)) from None


def as_user(user, gid=None):
    """Popen's arguments that start a child as ``user`` (a pwd entry) with group ``gid`` (default
    its pw_gid) and the user's supplementary groups; none when that is who we are."""
    if user.pw_uid == os.getuid():
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid if gid is None else gid,
            "extra_groups": os.getgrouplist(user.pw_name, user.pw_gid)}


def helper(module, *args):
    """(argv, env) that run a helper program of ours, ``python3 -S -m hostlink.daemon.MODULE``.

    -S: no site, whose .pth files can cost more than the helper itself (PYTHONPATH names the
    package instead): 100 job runners at once start about a third faster, a transfer 30 ms (bench/).
    """
    argv = [sys.executable, "-S", "-m", "hostlink.daemon." + module, *args]
    return argv, {"PYTHONPATH": _PACKAGE_PARENT}


def is_signal(signum):
    """Whether a client may name ``signum`` (Signal, Kill): a signal number, 1 to 64."""
    return 1 <= signum <= 64


def kill_group(pgid, sig):
    """Send ``sig`` to a whole process group; False if no process of it is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def exit_code(status):
    """(exit_code, signal) from a wait status, the shell's way: a signal N gives 128+N."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.WEXITSTATUS(status), 0


class Reaper:
    """Reaps every child on SIGCHLD and hands the status of the ones we wait for to callbacks."""

    def __init__(self):
        self._waiting = {}
        self.orphans_reaped = 0

    def watch(self, proc, callback):
        """Call ``callback(status)`` once ``proc`` (a Popen) has exited."""
        self._waiting[proc.pid] = (proc, callback)
        self.reap()  # it may have exited before we watched it

    def reap(self):
        """Collect every exited child; called from the SIGCHLD handler."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self._waiting.pop(pid, None)
            if entry is None:
                self.orphans_reaped += 1
                continue
            proc, callback = entry
            proc.returncode = status  # tells Popen it is gone; it never waits on it itself
            callback(status)
