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


def build_argv(cfg, request, env, cwd, exe=None):
    """The argv to execute for ``request`` (shell string or exact argv) in directory ``cwd``;
    ``exe`` the resolved executable (policy.Exe: its path replaces argv[0] in sidecar mode,
    where nsenter execs by name)."""
    if request.argv is not None:
        if not request.argv:
            raise BadRequest("empty argv: nothing to run")
        argv = list(request.argv)
        if cfg.namespace_pid and exe is not None:
            argv[0] = exe.path
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


def root_only(path, st=None):
    """Whether only root (or the daemon's own user) can change what ``path`` is: it and every
    directory above it owned by them and not writable by group or others (sudo's and sshd's
    StrictModes test). ``st``: the object the path must still name."""
    trusted = (0, os.getuid())
    try:
        here = os.stat(path)
        if st is not None and (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
            return False
        if here.st_uid not in trusted or here.st_mode & 0o022:
            return False
        d = path
        while d != "/":
            d = os.path.dirname(d)
            dst = os.stat(d)
            if dst.st_uid not in trusted or dst.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


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


def exec_options(cwd_fd, exe_fd, exe_path, by_path, argv, tty=False):
    """Popen's keywords that start ``argv`` in the held directory ``cwd_fd`` with the checked
    executable (policy.Target): nothing is looked up by name again.

    The child chdirs to /proc/self/fd/N: a magic link to the held directory itself, whatever its
    path now names (Popen chdirs in the child, as root, before it drops privileges, as it did with
    a path). The executable is its path when ``by_path`` (only root can change that path, or a
    script, which its interpreter opens by name anyway), else /proc/self/fd/M: the descriptor is
    kept across close_fds (pass_fds) and a preexec hook sets FD_CLOEXEC on it again, so the
    kernel opens the checked file and the command does not inherit the descriptor.

    A preexec hook makes Popen fork instead of vfork (about 2 ms at the daemon's size): it runs
    only for executables a non-root user could replace, and for terminals as before. hostlinkd is
    single-threaded (no executor, no thread: it resolves no names, asyncio's getaddrinfo pool is
    never started), so Python code between fork and exec is safe.
    """
    kw = {}
    hooks = []
    if cwd_fd >= 0:
        kw["cwd"] = "/proc/self/fd/%d" % cwd_fd
    if exe_path:
        if by_path or exe_fd < 0:
            kw["executable"] = exe_path
        else:
            kw["executable"] = "/proc/self/fd/%d" % exe_fd
            kw["pass_fds"] = (exe_fd,)
            hooks.append(lambda: _cloexec(exe_fd))
    if tty:
        hooks.append(_controlling_tty)
    if hooks:
        kw["preexec_fn"] = hooks[0] if len(hooks) == 1 else lambda: [h() for h in hooks]
    return kw


def _cloexec(fd):
    import fcntl
    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)


def spawn(cfg, request, user, target, stdin, stdout, stderr, tty=False):
    """Start ``request`` as ``user`` in ``target`` (a held policy.Target) on the given
    descriptors; returns the Popen.

    With ``tty`` the descriptors are a pseudo-terminal that becomes the command's controlling
    terminal (a preexec hook: hostlinkd is single-threaded, so it is safe here).
    """
    env = build_env(cfg, user, request.env)
    argv = build_argv(cfg, request, env, target.cwd, target.exe)
    kw = as_user(user)
    exe = target.exe if request.argv is not None and not cfg.namespace_pid else None
    kw.update(exec_options(target.cwd_fd, exe.fd if exe else -1, exe.path if exe else "",
                           exe.by_path if exe else True, argv, tty))
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, close_fds=True,
            start_new_session=True, restore_signals=True, **kw)
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


def helper(module, *args, user=None):
    """(argv, env) that run a helper program of ours, hostlink.daemon.MODULE, as ``user``.

    Isolated (-I: no module path from the working directory or the environment), the package
    imported from the daemon's own install location only, with an empty environment: nothing a
    client can name or plant decides what code the helper runs. -S: no site, whose .pth files
    can cost more than the helper itself: 100 job runners at once start about a third faster,
    a transfer 30 ms (bench/).
    """
    boot = ("import sys,runpy;sys.path.insert(0,%r);"
            "runpy.run_module('hostlink.daemon.%s',run_name='__main__',alter_sys=True)"
            % (_PACKAGE_PARENT, module))
    return [helper_python(user), "-I", "-S", "-c", boot, *args], {}


def helper_python(user=None):
    """The interpreter a helper runs with as ``user``: ours when that user may run it and read
    the package, else /usr/bin/python3 (ours may live under a private home, as pyenv's does)."""
    if user is None or user.pw_uid == os.getuid():
        return sys.executable
    gids = set(os.getgrouplist(user.pw_name, user.pw_gid))
    if not _reachable(_PACKAGE_PARENT + "/", user.pw_uid, gids, 0o1):
        raise SpawnFailed("the hostlink package in %s is not readable by %s, who runs this "
                          "transfer; install hostlink where every user can read it"
                          % (_PACKAGE_PARENT, user.pw_name))
    ours = _reachable(os.path.realpath(sys.executable), user.pw_uid, gids, 0o1) and \
        _reachable(os.path.realpath(sys.prefix) + "/", user.pw_uid, gids, 0o1)
    return sys.executable if ours else "/usr/bin/python3"


def _reachable(path, uid, gids, bit):
    """Whether ``uid`` (in ``gids``) can reach ``path``: search on every directory above it and
    ``bit`` (1 = execute) on the file itself (a path ending in / checks directories only)."""
    parts = path.rstrip("/").split("/")
    for i in range(1, len(parts) + 1):
        here = "/".join(parts[:i]) or "/"
        try:
            st = os.stat(here)
        except OSError:
            return False
        need = bit if (i == len(parts) and not path.endswith("/")) else 0o1
        shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
        if not (st.st_mode >> shift) & need:
            return False
    return True


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
    """Reaps every child on SIGCHLD and hands the status of the ones we wait for to callbacks;
    a ``before`` hook runs while the child is still a zombie (its pid, so its process group's
    number, cannot be reused yet)."""

    def __init__(self):
        self._waiting = {}
        self.orphans_reaped = 0

    def watch(self, proc, callback, before=None):
        """Call ``callback(status)`` once ``proc`` (a Popen) has exited."""
        self._waiting[proc.pid] = (proc, callback, before)
        self.reap()  # it may have exited before we watched it

    @property
    def watched(self):
        return len(self._waiting)

    def reap(self):
        """Collect every exited child; called from the SIGCHLD handler."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or not info.si_pid:
                return
            entry = self._waiting.pop(info.si_pid, None)
            if entry is not None and entry[2] is not None:
                entry[2]()
            try:
                pid, status = os.waitpid(info.si_pid, 0)  # exited: does not block
            except ChildProcessError:
                continue
            if entry is None:
                self.orphans_reaped += 1
                continue
            proc, callback, _ = entry
            proc.returncode = status  # tells Popen it is gone; it never waits on it itself
            callback(status)
