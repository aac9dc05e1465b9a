"""Per-client policy: which requests a client may make, decided before anything is spawned.

Rules match argv requests on the resolved executable (symlinks resolved, as the kernel would run
it) and on each argument, with shell-style globs; a last word ``**`` matches any further
arguments. Deny rules are checked first; when a client has allow rules, one must match. Shell
strings cannot be matched safely, so a client with rules may send them only with allow_shell.
"""

import fnmatch
import grp
import os
import pwd
import shlex

from .errors import BadRequest, Denied, Internal, SpawnFailed
from .spawn import DEFAULT_PATH, DENIED_ENV, host_path


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
        return len(args) == len(pats) and all(fnmatch.fnmatchcase(a, p) for a, p in zip(args, pats))

    def __str__(self):
        return "%s = %s (%s)" % (self.kind, self.text, self.where)


def resolve(cfg, program):
    """The real path of ``program`` as the command's PATH finds it, or None."""
    candidates = [program] if "/" in program else [os.path.join(d, program) for d in DEFAULT_PATH.split(":")]
    for path in candidates:
        real = host_path(cfg, path)
        if os.path.isfile(real) and os.access(real, os.X_OK):
            resolved = os.path.realpath(real)
            prefix = host_path(cfg, "")
            return resolved[len(prefix):] if prefix and resolved.startswith(prefix) else resolved
    return None


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


def check(cfg, client, request, cwd):
    """Raise Denied naming the rule when ``client`` may not make ``request``;
    return "ask" when a person must approve it first, None when it may run."""
    who = "client %s" % client.name
    if client.ping_only:
        raise Denied("%s may only ping (ping_only = true)" % who)
    _check_env(client, request.env, who)
    if client.cwd_allow:
        if not inside(host_path(cfg, cwd), [host_path(cfg, d) for d in client.cwd_allow]):
            raise Denied("%s may not run in %s (cwd_allow = %s)"
                             % (who, cwd, " ".join(client.cwd_allow)))
    from .approvals import signature
    approved = signature(request, cwd) in cfg.always.get(client.name, ())
    if request.argv is None:
        if client.ask_shell and not approved:
            return "ask"
        if client.restricted and not (client.allow_shell or approved):
            raise Denied("%s has allow/deny rules, so it may only send argv requests "
                                       "(hostlink exec --argv); shell strings cannot be matched "
                                       "safely (allow_shell = true permits them)" % who)
        return None
    exe = resolve(cfg, request.argv[0]) if request.argv else None
    if exe is not None and _is_hostlink_client(host_path(cfg, exe)):
        raise SpawnFailed("%s on the host is itself a hostlink client or shim: running "
                                         "it would call back into hostlink (a loop)" % exe)
    if exe is None:
        if client.allow:
            raise Denied("%s: %s is not an executable on the host, so no allow "
                                       "rule matches it" % (who, request.argv[0] if request.argv else ""))
        return None
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
    if request.xfer not in ("send", "receive", "df", "stat") or not request.argv:
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


def _is_hostlink_client(path):
    from ..wire.launcher import HEADER
    try:
        with open(path, "rb") as f:
            return f.read(len(HEADER)) == HEADER
    except OSError:
        return False


def _check_env(client, env, who):
    for name, _ in env:
        explicitly = name in client.env_allow
        if (name in DENIED_ENV or name.startswith("BASH_FUNC_")) and not explicitly:
            raise Denied("setting %s is not allowed (it changes what runs before the "
                                       "command; env_allow = %s permits it)" % (name, name))
        if client.env_allow and not any(fnmatch.fnmatchcase(name, p) for p in client.env_allow):
            raise Denied("%s may not set %s (env_allow = %s)"
                             % (who, name, " ".join(client.env_allow)))
