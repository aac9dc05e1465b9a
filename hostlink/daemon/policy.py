"""Per-client policy: which requests a client may make, decided before anything is spawned.

Rules match argv requests on the resolved executable and on each argument, with shell-style
globs; a last word ``**`` matches any further arguments. Deny rules are checked first; when a
client has allow rules, one must match. Shell strings cannot be matched safely, so a client with
rules may send them only with allow_shell.

Check and use the same object (``Target``): the working directory is opened (O_PATH) and checked
on that descriptor, and the command starts in it (spawn.py chdirs to /proc/self/fd/N, the held
object, never the path again). ``argv[0]`` is resolved as exec would: relative to that directory,
a bare name through the command's own PATH; the file found is opened, the rules judge the path
read back from that descriptor, and spawn.py executes that very file (by its descriptor, or by
its path when only root can change the path: the same object, without a descriptor to pass).
A program that cannot be resolved is refused to any client with rules (deny rules fail closed).
"""

import fnmatch
import grp
import os
import pwd
import shlex
import stat

from .errors import BadCwd, BadRequest, Denied, Internal, SpawnFailed
from .spawn import DEFAULT_PATH, DENIED_ENV, host_path, root_only

# Environment names that make a program, its interpreter or the tools it starts load code or
# configuration from where the value points. A client with rules may set one only when its
# env_allow names it exactly (a glob such as GIT_* does not admit them). Sources: sudo's env.c
# (initial_badenv_table: the variables sudo always removes), glibc's unsecvars.h (what ld.so
# drops for setuid programs), OpenSSH's session.c (what sshd refuses from AcceptEnv), and each
# tool's manual (git-config(1) ENVIRONMENT, python(1), perlrun(1), ruby(1), node(1), bash(1)).
# Maintain it here; references/security.md lists it.
CODE_ENV = frozenset((
    # the dynamic loader and libc (glibc unsecvars.h)
    "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR", "OPENSSL_CONF",
    "OPENSSL_ENGINES", "OPENSSL_MODULES",
    # where programs are found, and whose dotfiles are read (git reads $HOME/.gitconfig)
    "PATH", "HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "SHELL", "TMPDIR",
    # shells (sudo env.c)
    "BASH_ENV", "ENV", "PS4", "SHELLOPTS", "BASHOPTS", "IFS", "CDPATH", "GLOBIGNORE", "FPATH",
    "ZDOTDIR", "PROMPT_COMMAND", "NULLCMD", "READNULLCMD", "TMPPREFIX",
    # interpreters
    "PERLLIB", "PERLIO_DEBUG", "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS", "CLASSPATH", "PHPRC", "PHP_INI_SCAN_DIR", "TCLLIBPATH", "GEM_HOME",
    "GEM_PATH", "BUNDLE_GEMFILE", "R_PROFILE", "R_PROFILE_USER", "MAKEFLAGS", "MFLAGS",
    # git (git(1) ENVIRONMENT): config, helpers it runs, and which repository's config it reads
    "GIT_EXEC_PATH", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR",
    "GIT_PAGER", "GIT_EXTERNAL_DIFF", "GIT_PROXY_COMMAND", "GIT_DIR", "GIT_COMMON_DIR",
    "GIT_WORK_TREE", "GIT_TEMPLATE_DIR", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    # helpers many tools start
    "EDITOR", "VISUAL", "PAGER", "MANPAGER", "LESSOPEN", "LESSCLOSE", "BROWSER",
    "TERMINFO", "TERMINFO_DIRS", "TERMCAP", "TERMPATH",
    "HOSTLINK_COMMAND",
))
CODE_ENV_PREFIXES = ("LD_", "PYTHON", "PERL5", "RUBY", "LUA_", "GIT_CONFIG", "GIT_SSH",
                     "BASH_FUNC_", "NPM_CONFIG_", "DYLD_")
# Names that only describe the terminal, language or time zone: every client may set them (the
# client sends TERM itself on a terminal).
INERT_ENV = ("TERM", "COLORTERM", "NO_COLOR", "COLUMNS", "LINES", "LANG", "LANGUAGE", "LC_*", "TZ")


def loads_code(name):
    """Whether setting ``name`` can make what runs load code or configuration (CODE_ENV)."""
    return name in CODE_ENV or name.upper().startswith(CODE_ENV_PREFIXES)


class Rule:
    """``allow = PATTERN...`` or ``deny = PATTERN...`` of a client section."""

    def __init__(self, kind, text, where):
        self.kind = kind
        self.text = text
        self.where = where
        try:
            self.words = shlex.split(text)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if not self.words or not self.words[0].startswith("/"):
            raise ValueError("a rule starts with the executable's absolute path (a glob), got %r" % text)
        if "**" in self.words[:-1]:
            raise ValueError("'**' may only be the last word")

    def matches(self, exe, args):
        if not fnmatch.fnmatchcase(exe, self.words[0]):
            return False
        pats = self.words[1:]
        if pats and pats[-1] == "**":
            pats = pats[:-1]
            if len(args) < len(pats):
                return False
            args = args[:len(pats)]
        if len(args) != len(pats):
            return False
        # An allow rule's glob never matches an argument with a ".." component: "/srv/*" is
        # meant as "below /srv", and "/srv/../etc/shadow" is not. Not normalised: the text is
        # what the program gets, and "a/b/.." need not be "a" when b is a symlink, nor is the
        # program's idea of a path ours. Deny and ask rules keep matching such text (matching
        # more there refuses or asks more, never less).
        strict = self.kind == "allow"
        return all(fnmatch.fnmatchcase(a, p) and not (strict and _is_glob(p) and _climbs(a))
                   for a, p in zip(args, pats))

    def __str__(self):
        return "%s = %s (%s)" % (self.kind, self.text, self.where)


def _is_glob(pattern):
    return any(c in pattern for c in "*?[")


def _climbs(arg):
    """Whether ``arg`` holds a ".." path component (also after "=", as in --file=../x)."""
    return ".." in arg and any(".." in part.split("/") for part in arg.split("="))


class Exe:
    """The executable a request runs: opened once, judged by ``path`` (read back from the
    descriptor), executed through the descriptor unless ``by_path`` (spawn.exec_options)."""

    __slots__ = ("fd", "rfd", "path", "dev", "ino", "by_path", "script", "hostlink")

    def __init__(self, fd, path, st, by_path, script=False, hostlink=False):
        self.fd = fd
        self.rfd = -1  # held open for reading: no write lease can be taken until the spawn
        self.path = path
        self.dev, self.ino = (st.st_dev, st.st_ino) if st is not None else (0, 0)
        self.by_path = by_path
        self.script = script
        self.hostlink = hostlink

    def identity(self):
        return {"path": self.path, "dev": self.dev, "ino": self.ino}


class Target:
    """Where a request runs and what it runs, held open from the check to the exec.

    ``cwd`` is the directory as asked (audit), ``real_cwd`` its path read back from the held
    descriptor ``cwd_fd`` (what cwd_allow judged and what the command starts in), ``exe`` the
    resolved executable of an argv request (None for shell strings, or when not found)."""

    def __init__(self, cwd, cwd_fd, real_cwd):
        self.cwd = cwd
        self.cwd_fd = cwd_fd
        self.real_cwd = real_cwd
        self.exe = None

    def close(self):
        for fd in (self.cwd_fd, self.exe.fd if self.exe else -1, self.exe.rfd if self.exe else -1):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.cwd_fd = -1
        if self.exe:
            self.exe.fd = self.exe.rfd = -1


def _fd_path(fd):
    return os.readlink("/proc/self/fd/%d" % fd)


def hold(cfg, request, cwd):
    """A Target for ``request`` in ``cwd``: the directory opened, argv[0] resolved in it."""
    if cfg.namespace_pid:
        target = Target(cwd, -1, _strip(cfg, os.path.realpath(host_path(cfg, cwd))))
    else:
        if not cwd.startswith("/"):
            raise BadCwd("the working directory must be an absolute path, got %r" % cwd)
        try:
            fd = os.open(cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BadCwd("working directory %s: %s on the host" % (cwd, exc.strerror)) from None
        target = Target(cwd, fd, _fd_path(fd))
    if request.argv:
        try:
            target.exe = resolve(cfg, request.argv[0], target,
                                 dict(request.env).get("PATH", DEFAULT_PATH))
        except BaseException:
            target.close()
            raise
    return target


def resolve(cfg, program, target, search_path=DEFAULT_PATH):
    """The Exe that ``program`` names, found as exec finds it: a name with a slash relative to
    the command's directory, a bare name through ``search_path`` (the command's PATH), or None."""
    if not program:
        return None
    if "/" in program:
        candidates = [program]
    else:
        candidates = [os.path.join(d or ".", program) for d in search_path.split(":")]
    if cfg.namespace_pid:  # sidecar: by path through /proc/PID/root, executed by path (nsenter)
        for path in candidates:
            real = host_path(cfg, os.path.join(target.real_cwd, path))
            if os.path.isfile(real) and os.access(real, os.X_OK):
                st = os.stat(real)
                return Exe(-1, _strip(cfg, os.path.realpath(real)), st, True)
        return None
    for path in candidates:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC, dir_fd=target.cwd_fd)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and os.access("/proc/self/fd/%d" % fd, os.X_OK):
                return _exe(fd, st)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    return None


def _exe(fd, st):
    from ..wire.launcher import HEADER
    real = _fd_path(fd)
    rfd, head = _open_read(fd, len(HEADER))
    script = head.startswith(b"#!")
    # Only root can re-point this path: executing it by path runs this object (no descriptor to
    # pass, vfork stays possible). A script is always run by path: its interpreter opens it by
    # name, and /proc/self/fd/N as $0 breaks "$(dirname "$0")" (the residual risk: security.md).
    by_path = script or root_only(real, st)
    exe = Exe(fd, real, st, by_path, script, head == HEADER)
    exe.rfd = rfd
    return exe


def _open_read(fd, n):
    """(a read descriptor, the first ``n`` bytes) of the held regular file ``fd``, without
    waiting on its owner: where a write lease would hold a plain open (and the exec, which the
    daemon waits for) for lease-break-time (45 s), a non-blocking open fails at once and the
    request is refused. Held until the spawn, the read descriptor keeps a new write lease off.
    (-1, b"") when root cannot open it (the exec will say why)."""
    try:
        rfd = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY |
                      os.O_CLOEXEC)
    except BlockingIOError:
        raise SpawnFailed("%s is leased by another process (F_SETLEASE): running it would wait "
                          "on that process; nothing was run" % _fd_path(fd)) from None
    except OSError:
        return -1, b""
    try:
        return rfd, os.pread(rfd, n, 0)
    except OSError:
        return rfd, b""


def _strip(cfg, resolved):
    prefix = host_path(cfg, "")
    return resolved[len(prefix):] if prefix and resolved.startswith(prefix) else resolved


def user_for(cfg, client):
    """The pwd entry commands of ``client`` run as, with run_as_group applied to its gid."""
    name = client.run_as or cfg.run_as_user
    try:
        user = pwd.getpwnam(name) if name else pwd.getpwuid(os.getuid())
    except KeyError:
        raise Internal("run_as user %r does not exist on the host" % name) from None
    if client.run_as_group:
        try:
            gid = grp.getgrnam(client.run_as_group).gr_gid
        except KeyError:
            raise Internal("run_as_group %r does not exist" % client.run_as_group) from None
        user = pwd.struct_passwd((user.pw_name, user.pw_passwd, user.pw_uid, gid, user.pw_gecos,
                                  user.pw_dir, user.pw_shell))
    return user


def timeout_for(cfg, client, asked, default, cap):
    """The timeout a request runs with: ``asked``, else ``default``, never past ``cap`` nor the
    client's max_timeout_ms (a cap of 0 is none; "none" asked under a cap gets the cap)."""
    timeout = asked or default
    caps = [t for t in (cap, client.max_timeout_ms) if t]
    if caps and (timeout == 0 or timeout > min(caps)):
        timeout = min(caps)
    return timeout


def check(cfg, client, request, target):
    """Raise Denied naming the rule when ``client`` may not make ``request`` in ``target`` (a
    held Target); return "ask" when a person must approve it first, None when it may run."""
    who = "client %s" % client.name
    if client.ping_only:
        raise Denied("%s may only ping (ping_only = true)" % who)
    _check_env(client, request.env, who)
    if client.cwd_allow:
        if not _within(target.real_cwd, client.cwd_allow):
            raise Denied("%s may not run in %s (cwd_allow = %s)"
                             % (who, target.cwd, " ".join(client.cwd_allow)))
    from .approvals import approved_always
    approved = approved_always(cfg, client, request, target)
    if request.argv is None:
        if client.ask_shell and not approved:
            return "ask"
        if client.restricted and not (client.allow_shell or approved):
            raise Denied("%s has allow/deny rules, so it may only send argv requests "
                                       "(hostlink exec --argv); shell strings cannot be matched "
                                       "safely (allow_shell = true permits them)" % who)
        return None
    exe = target.exe
    if exe is not None and exe.hostlink:
        raise SpawnFailed("%s on the host is itself a hostlink client or shim: running "
                                         "it would call back into hostlink (a loop)" % exe.path)
    if exe is None:
        if client.restricted:  # fail closed: a rule cannot be checked on what cannot be found
            raise Denied("%s: %s is not an executable on the host (looked up from %s), so its "
                         "rules cannot be checked" % (who, request.argv[0] if request.argv else "",
                                                      target.real_cwd))
        return None
    exe = exe.path
    args = list(request.argv[1:])
    for rule in client.deny:
        if rule.matches(exe, args):
            raise Denied("%s: %s is refused by rule %s" % (who, exe, rule))
    if approved:
        return None
    if any(rule.matches(exe, args) for rule in client.ask):
        return "ask"
    if client.allow and not any(rule.matches(exe, args) for rule in client.allow):
        raise Denied("%s: no allow rule matches %s %s (rules: %s)"
                         % (who, exe, " ".join(args), "; ".join(r.text for r in client.allow)))
    return None


def check_transfer(cfg, client, request):
    """The directory a transfer ``request`` (cp/put/get/df) of ``client`` is confined to (its
    helper resolves the path beneath it, on a descriptor); a Refused when it may not be made."""
    if request.xfer not in ("send", "receive", "df", "stat", "list") or not request.argv:
        raise BadRequest("unknown transfer %r" % request.xfer)
    if cfg.namespace_pid:
        raise BadRequest("transfers are not available in sidecar mode yet")
    if client.ping_only:
        raise Denied("client %s may only ping" % client.name)
    path = request.argv[0]
    if not path.startswith("/"):
        raise BadRequest("transfer paths on the host are absolute, got %r" % path)
    if client.restricted and not client.cwd_allow:
        raise Denied("client %s has rules but no cwd_allow, so it may not transfer files"
                     % client.name)
    if not client.cwd_allow:
        return "/"
    allowed = " ".join(client.cwd_allow)
    if request.cwd and not inside(request.cwd, client.cwd_allow):
        raise Denied("client %s may not work in %s (cwd_allow = %s)"
                     % (client.name, request.cwd, allowed))
    root = _root_of(path, client.cwd_allow)
    if root is None:
        raise Denied("client %s may not transfer %s (cwd_allow = %s)"
                     % (client.name, path, allowed))
    return root


def _root_of(path, roots):
    """The first of ``roots`` (symlinks resolved) that ``path`` (symlinks resolved) is in, or None."""
    real = os.path.realpath(path)
    for root in (os.path.realpath(r) for r in roots):
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return root
    return None


def inside(path, roots):
    """Whether ``path``, symlinks resolved, is one of ``roots`` (resolved too) or below one."""
    return _root_of(path, roots) is not None


def _within(real, roots):
    """Whether the resolved path ``real`` is one of ``roots`` (resolved) or below one."""
    return any(real == r or real.startswith(r.rstrip("/") + "/")
               for r in (os.path.realpath(root) for root in roots))


def _check_env(client, env, who):
    """A client without rules may set any name but the few that change what runs before the
    command (DENIED_ENV; it could run a shell anyway). A client with rules gets the safe base
    plus what env_allow admits (and INERT_ENV); a name that loads code (CODE_ENV) only when
    env_allow names it exactly, never through a glob."""
    for name, _ in env:
        explicitly = name in client.env_allow
        if explicitly:
            continue
        if name in DENIED_ENV or name.startswith("BASH_FUNC_"):
            raise Denied("setting %s is not allowed (it changes what runs before the "
                                       "command; env_allow = %s permits it)" % (name, name))
        if any(fnmatch.fnmatchcase(name, p) for p in INERT_ENV):
            continue
        if client.restricted and loads_code(name):
            raise Denied("%s may not set %s: it makes programs load code or configuration from "
                         "where it points, so only env_allow = %s (the exact name) permits it"
                         % (who, name, name))
        if (client.env_allow or client.restricted) and not any(
                fnmatch.fnmatchcase(name, p) for p in client.env_allow):
            raise Denied("%s may not set %s (env_allow = %s)"
                             % (who, name, " ".join(client.env_allow) or "(none)"))


# Options that make a program run a command, load code, or read configuration that can (the
# words a rule would have to admit). Sources: each tool's manual; GTFOBins lists many more.
CODE_OPTIONS = {
    # git -c alias.x=!cmd x, -c core.pager=cmd, -c core.fsmonitor=cmd; -C/--git-dir: a repo's config
    "git": ("-c", "--config-env", "--exec-path", "-C", "--git-dir", "--work-tree"),
    "env": ("*",), "sudo": ("*",), "su": ("*",), "doas": ("*",), "nsenter": ("*",),
    "chroot": ("*",), "xargs": ("*",), "nohup": ("*",), "timeout": ("*",), "nice": ("*",),
    "setsid": ("*",), "busybox": ("*",), "script": ("-c",), "watch": ("*",),
    "sh": ("-c",), "bash": ("-c",), "dash": ("-c",), "zsh": ("-c",), "ksh": ("-c",),
    "python": ("-c", "-m"), "perl": ("-e", "-E", "-M"), "ruby": ("-e", "-r"),
    "node": ("-e", "--eval", "-r", "--require"), "php": ("-r",), "lua": ("-e",),
    "find": ("-exec", "-execdir", "-ok", "-okdir", "-fprintf", "-fprint", "-delete"),
    "tar": ("--to-command", "--use-compress-program", "-I", "--checkpoint-action", "--info-script"),
    "rsync": ("-e", "--rsh", "--rsync-path"), "ssh": ("-o", "-F"), "scp": ("-o", "-S", "-F"),
    "awk": ("*",), "gawk": ("*",), "mawk": ("*",), "sed": ("*",), "make": ("*",),
    "vim": ("*",), "vi": ("*",), "less": ("*",), "more": ("*",), "man": ("*",),
    "docker": ("*",), "systemctl": ("*",), "systemd-run": ("*",), "crontab": ("*",),
    "zip": ("-T", "--unzip-command", "-TT"), "journalctl": ("*",), "dpkg": ("*",), "apt": ("*",),
    "apt-get": ("*",), "pip": ("*",), "pip3": ("*",), "npm": ("*",), "npx": ("*",),
}
# Programs whose subcommand comes after global options: a deny rule on "PROGRAM SUBCOMMAND **"
# misses "PROGRAM -c x=y SUBCOMMAND".
_GLOBAL_OPTIONS_FIRST = ("git", "docker", "systemctl", "apt", "apt-get", "pip", "npm", "kubectl")


def _code_options(exe_glob):
    name = os.path.basename(exe_glob)
    for prog, opts in CODE_OPTIONS.items():
        if fnmatch.fnmatchcase(prog, name) or (prog in ("python", "perl", "ruby", "node", "php",
                                                        "lua") and fnmatch.fnmatchcase(prog + "3", name)):
            return prog, opts
        if prog in ("python", "perl", "ruby", "node", "php", "lua") and name.startswith(prog):
            return prog, opts
    return None, ()


def warnings(cfg):
    """What --check-config (and start) warns about: rules that say less than they seem to."""
    out = []
    for client in cfg.clients.values():
        for rule in client.allow + client.ask:
            prog, opts = _code_options(rule.words[0])
            if not prog:
                continue
            pats = rule.words[1:]
            admitted = [o for o in opts if o == "*" and pats or any(
                p == "**" or fnmatch.fnmatchcase(o, p) or fnmatch.fnmatchcase(o + "=x", p)
                for p in pats)]
            if not pats and "*" in opts:
                continue  # the program alone, no arguments: exactly that
            if admitted:
                out.append("%s admits %s %s, which can run any command as the client's user: an "
                           "allow rule names words, not what the program does with them "
                           "(references/security.md, 'What a rule is')"
                           % (rule, prog, " / ".join(o for o in admitted if o != "*")
                              or "with arguments it interprets as code"))
        for rule in client.deny:
            prog = os.path.basename(rule.words[0])
            if prog in _GLOBAL_OPTIONS_FIRST and len(rule.words) > 1 and not rule.words[1].startswith("-"):
                out.append("%s matches only when %s is the first argument: '%s -c x=y %s' (global "
                           "options first) is not refused; allow what may run instead of denying "
                           "what may not" % (rule, rule.words[1], prog, rule.words[1]))
    return out
