"""hostlinkd's configuration: ``key = value`` lines with ``#`` comments (hostlink.conf).

Every key is listed once in KEYS with its parser, default and reason. The first hostlink's
hostlink.conf reads unchanged: its key names are ours (``unix_path`` is accepted for ``socket``),
and its keys that mean nothing here are reported in ``notices``, not refused.
"""

import grp
import os
import socket
import stat

from . import first_conf

DEFAULT_PATH = "/etc/hostlink/hostlink.conf"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, line and reason."""


class NotPrivate(ConfigError):
    """A file holding a token is readable by others; ``path`` is it (hostlink-install doctor --fix)."""

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


def _bool(text):
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _int_in(low, high):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError("must be between %d and %d" % (low, high))
        return value
    return parse


def _mode(text):
    try:
        value = int(text, 8)
    except ValueError:
        raise ValueError("expected an octal mode such as 0660") from None
    if not 0 <= value <= 0o777:
        raise ValueError("expected an octal mode such as 0660")
    return value


def _abspath(text):
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    return text


def _optpath(text):
    return _abspath(text) if text else ""


def _str(text):
    return text


def _choice(*choices, **aliases):
    def parse(text):
        text = aliases.get(text, text)
        if text not in choices:
            raise ValueError("must be one of: %s" % ", ".join(choices))
        return text
    return parse


_HOUR_MS = 3600 * 1000
_DAY_MS = 24 * _HOUR_MS

# key: (parser, default, why). Defaults are documented in references/setup.md.
KEYS = {
    "node_name": (_str, "", "name shown by ping and -j; empty means the host name"),
    "auth_token": (_str, "", "the shared secret of the default client"),
    "auth_token_file": (_optpath, "", "a file holding auth_token, kept out of the conf"),
    "shell": (_abspath, "/bin/sh", "runs shell-string commands as SHELL -c"),
    "socket": (_abspath, "/run/hostlink/hostlink.sock", "the Unix socket"),
    "extra_socket": (_optpath, "", "a second Unix socket, same mode and group: for sandboxes that "
                     "refuse to mount /run (OpenClaw's)"),
    "unix_enabled": (_bool, True, "listen on the Unix socket"),
    "socket_mode": (_mode, 0o660, "owner and socket group may connect, others not"),
    "socket_group": (_str, "", "group that may connect; empty keeps the daemon's group"),
    "max_concurrent": (_int_in(1, 4096), 16, "commands running at once; one more waits for a slot"),
    "busy_wait_ms": (_int_in(0, _HOUR_MS), 30000, "how long a request waits for a free slot (0: busy at once)"),
    "max_queued": (_int_in(0, 65536), 256, "requests waiting for a slot; one more is told busy (half of max_connections)"),
    "max_connections": (_int_in(1, 65536), 512, "open connections of any kind (fds are finite)"),
    "max_unauthenticated": (_int_in(1, 4096), 64, "connections still authenticating (sshd MaxStartups)"),
    "max_unauthenticated_per_peer": (_int_in(1, 4096), 32, "of those, from one uid, container "
                                     "or address: a flood never locks out another peer"),
    "auth_timeout_ms": (_int_in(100, 600000), 10000, "deadline for preface and token (sshd LoginGraceTime)"),
    "default_timeout_ms": (_int_in(0, 30 * _DAY_MS), 30000, "timeout when the client asks none (0: none)"),
    "max_timeout_ms": (_int_in(0, 30 * _DAY_MS), 24 * _HOUR_MS, "largest timeout a client may ask (0: no cap)"),
    "kill_grace_ms": (_int_in(0, 600000), 2000, "time between SIGTERM and SIGKILL"),
    "shutdown_grace_ms": (_int_in(0, 3600000), 10000, "on SIGTERM, how long running commands may finish"),
    "audit_log": (_optpath, "/var/log/hostlink/audit.log", "one JSON line per request; empty: off"),
    "log_target": (_str, "stderr", "stderr, syslog, or a file path"),
    "log_level": (_choice("debug", "info", "warning", "error", warn="warning"), "info",
                  "least severity logged (the first hostlink's warn is warning)"),
    "pid_file": (_optpath, "", "write the daemon's pid here"),
    "namespace_pid": (_int_in(0, 1 << 22), 0, "sidecar: run commands in this host pid's namespaces"),
    "run_as_user": (_str, "", "run commands as this user instead of the daemon's"),
    "tcp_enabled": (_bool, False, "also listen on TCP"),
    "tcp_bind": (_str, "127.0.0.1", "TCP address"),
    "tcp_port": (_int_in(1, 65535), 9876, "TCP port (the first hostlink's)"),
    "tcp_allow_any": (_bool, False, "permit a wildcard tcp_bind"),
    "approval_timeout_ms": (_int_in(1000, _DAY_MS), 300000, "how long an ask request waits for a person"),
    "approval_notify": (_str, "", "command run for each new approval request (sh -c)"),
    "admin_socket": (_optpath, "/run/hostlink-admin/admin.sock", "root-only socket of hostlink-approve"),
    "policy_dir": (_optpath, "", "drop-in rules (hostlink-approve --always); default policy.d beside the conf"),
    "job_spool_dir": (_abspath, "/var/lib/hostlink/jobs", "detached jobs' records and output (0700)"),
    "job_default_timeout_ms": (_int_in(0, 365 * _DAY_MS), _DAY_MS, "a job's timeout when none is asked (0: none)"),
    "job_max_timeout_ms": (_int_in(0, 365 * _DAY_MS), 0, "the largest timeout a job may ask (0: no cap)"),
    "job_max_spool_bytes": (_int_in(0, 1 << 50), 1 << 30, "output kept per job; past it, drained and counted"),
    "max_jobs": (_int_in(1, 65536), 64, "detached jobs running at once, all clients"),
    "max_jobs_per_client": (_int_in(1, 65536), 16, "detached jobs one client may have running"),
    "job_spool_total_bytes": (_int_in(0, 1 << 60), 16 << 30, "job_max_spool_bytes summed over "
                              "running jobs: the disk they may fill"),
    "max_pending_approvals": (_int_in(1, 4096), 8, "requests of one client waiting for a person at once"),
    "audit_failure": (_choice("closed", "open"), "closed", "closed: refuse new commands while "
                      "the audit log cannot be written (sudo's I/O log)"),
    "job_retention_s": (_int_in(0, 3650 * 86400), 7 * 86400, "finished jobs are removed after this"),
    "default_max_output_bytes": (_int_in(0, 1 << 40), 0, "-j and HLNK results keep this much "
                                 "output per stream when the request names no cap (0: all)"),
    "max_output_bytes": (_int_in(0, 1 << 40), 0, "the largest such cap a request may ask (0: none)"),
    "hlnk_buffer_bytes": (_int_in(0, 1 << 40), 256 << 20, "HLNK frames over 1 MiB (a put's file in "
                          "base64) held at once by all clients; one more is told busy"),
    "output_tmpdir": (_optpath, "/run/hostlink/output", "where an HLNK exec with output_to_file "
                      "(the first hostlink's -O) leaves hl_ID_stdout and hl_ID_stderr"),
    "tls": (_choice("required", "optional", "off"), "", "TLS on TCP; unset means optional"),
    "tls_cert": (_optpath, "", "certificate; default hostlink.crt beside the conf (made if missing)"),
    "tls_key": (_optpath, "", "its key (0600); default hostlink.key beside the conf"),
}
ALIASES = {"unix_path": "socket", "unix_mode": "socket_mode", "unix_group": "socket_group"}
# The first hostlink's keys that mean nothing here, each with why (told as a notice, not refused).
IGNORED = {
    "max_concurrent_io": "transfers count in max_concurrent with every other command",
    "log_file": "the first hostlink ignored it too; log_target names the log file",
}


class Config:
    """A parsed hostlink.conf: one attribute per key in KEYS."""

    def __init__(self, path=""):
        self.path = path
        self.notices = []
        self.old_names = set()  # keys given under the first hostlink's names (unix_path, ...)
        self.first_keys = set()  # its keys that mean nothing here (max_concurrent_io, ...)
        self.clients = {}  # name -> Client, from [client NAME] sections
        self.always = {}  # client name -> [exact request], from policy_dir (hostlink-approve --always)
        for key, (_, default, _why) in KEYS.items():
            setattr(self, key, default)

    @property
    def node(self):
        return self.node_name or socket.gethostname()

    @property
    def socket_gid(self):
        """The numeric id of socket_group, or -1 for none."""
        if not self.socket_group:
            return -1
        if self.socket_group.isdigit():
            return int(self.socket_group)
        return grp.getgrnam(self.socket_group).gr_gid


# Keys of a ``[client NAME]`` section: (parser, default, repeatable). See references/security.md.
CLIENT_KEYS = {
    "token": (_str, "", False),
    "token_file": (_abspath, "", False),
    "allow": (_str, None, True),
    "deny": (_str, None, True),
    "allow_shell": (_bool, False, False),
    "ask": (_str, None, True),
    "ask_shell": (_bool, False, False),
    "cwd_allow": (_str, None, True),
    "env_allow": (_str, None, True),
    "run_as": (_str, "", False),
    "run_as_group": (_str, "", False),
    "max_timeout_ms": (_int_in(0, 30 * _DAY_MS), 0, False),
    "ping_only": (_bool, False, False),
    # put/cp keep setuid, setgid and sticky bits only when this is true: a client that may write
    # files must not plant a setuid program that a local user then runs as its owner.
    "allow_setuid": (_bool, False, False),
}


class Client:
    """One client of the daemon: its token and its policy (references/security.md)."""

    def __init__(self, name, where=""):
        self.name = name
        self.where = where
        for key, (_, default, repeat) in CLIENT_KEYS.items():
            setattr(self, key, [] if repeat else default)

    @property
    def restricted(self):
        """True when rules decide what runs (shell strings then need allow_shell)."""
        return bool(self.allow or self.deny or self.ask)


def _section(line, where):
    words = line[1:-1].split()
    if len(words) != 2 or words[0] != "client" or not words[1].replace("-", "").replace("_", "").isalnum():
        raise ConfigError("%s: expected a section [client NAME] (letters, digits, - and _), got %s"
                          % (where, line))
    return words[1]


def parse(text, path="hostlink.conf"):
    """A Config from the text of a hostlink.conf; ConfigError names the line that is wrong."""
    cfg = Config(path)
    seen = {}
    client = None
    its = first_conf.is_its(text)
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        where = "%s:%d" % (path, lineno)
        if line.startswith("[") and line.endswith("]"):
            name = _section(line, where)
            if name in cfg.clients or name == "default":
                raise ConfigError("%s: client '%s' is defined twice" % (where, name))
            client = cfg.clients[name] = Client(name, where)
            seen = {}
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError("%s: expected 'key = value', got %r" % (where, line[:80]))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if client is not None:
            _client_key(client, key, value, where, lineno, seen)
            continue
        if key in ALIASES:
            cfg.old_names.add(ALIASES[key])
        key = ALIASES.get(key, key)
        if key in IGNORED:
            cfg.first_keys.add(key)
            cfg.notices.append("%s: '%s' is ignored: %s" % (where, key, IGNORED[key]))
            continue
        if key not in KEYS:
            raise ConfigError("%s: unknown key '%s'" % (where, key))
        if key in seen and not its:
            raise ConfigError("%s: '%s' is set again (first at line %d)" % (where, key, seen[key]))
        if key in seen:  # the first hostlink read every line: the last one counts
            cfg.notices.append("%s: '%s' is set again (first at line %d); this value counts"
                               % (where, key, seen[key]))
        seen[key] = lineno
        try:
            setattr(cfg, key, KEYS[key][0](value))
        except ValueError as exc:
            raise ConfigError("%s: bad value for '%s': %s" % (where, key, exc)) from None
    _check(cfg, seen)
    return cfg


def _client_key(client, key, value, where, lineno, seen):
    spec = CLIENT_KEYS.get(key)
    if spec is None:
        raise ConfigError("%s: unknown key '%s' in [client %s] (known: %s)"
                          % (where, key, client.name, ", ".join(CLIENT_KEYS)))
    parser, _, repeat = spec
    if not repeat and key in seen:
        raise ConfigError("%s: '%s' is set again (first at line %d)" % (where, key, seen[key]))
    seen[key] = lineno
    try:
        parsed = parser(value)
    except ValueError as exc:
        raise ConfigError("%s: bad value for '%s': %s" % (where, key, exc)) from None
    if repeat:
        if key in ("allow", "deny", "ask"):
            from .policy import Rule
            try:
                getattr(client, key).append(Rule(key, parsed, where))
            except ValueError as exc:
                raise ConfigError("%s: bad %s rule: %s" % (where, key, exc)) from None
        else:
            getattr(client, key).extend(parsed.split())
    else:
        setattr(client, key, parsed)


def _tls_defaults(cfg):
    # A first-hostlink conf with TCP on and no tls key: optional, so its clients keep working.
    if not cfg.tls:
        cfg.tls = "optional"
    base = os.path.dirname(os.path.abspath(cfg.path))
    cfg.tls_cert = cfg.tls_cert or os.path.join(base, "hostlink.crt")
    cfg.tls_key = cfg.tls_key or os.path.join(base, "hostlink.key")


def _check(cfg, explicit=()):
    first_conf.defaults(cfg, explicit)
    _tls_defaults(cfg)
    cfg.policy_dir = cfg.policy_dir or os.path.join(os.path.dirname(os.path.abspath(cfg.path)), "policy.d")
    if "output_tmpdir" in explicit and "job_spool_dir" not in explicit:
        first_conf.spool_in_output_tmpdir(cfg)
    if cfg.max_timeout_ms and cfg.default_timeout_ms > cfg.max_timeout_ms:
        # The first hostlink clamps a request's timeout to the cap, its default too: so do we.
        if "default_timeout_ms" in explicit:
            cfg.notices.append("%s: default_timeout_ms (%d) is over max_timeout_ms (%d); commands "
                               "get %d ms" % (cfg.path, cfg.default_timeout_ms, cfg.max_timeout_ms,
                                              cfg.max_timeout_ms))
        cfg.default_timeout_ms = cfg.max_timeout_ms
    if cfg.max_output_bytes and cfg.default_max_output_bytes > cfg.max_output_bytes:
        cfg.default_max_output_bytes = cfg.max_output_bytes  # the first hostlink clamps it too
    if cfg.tcp_enabled and cfg.tcp_bind in ("0.0.0.0", "::", "") and not cfg.tcp_allow_any:
        raise ConfigError("%s: tcp_bind = %s listens on every network; bind the WireGuard or "
                          "loopback address, or set tcp_allow_any = true" % (cfg.path, cfg.tcp_bind))
    if cfg.socket_group:
        try:
            cfg.socket_gid
        except KeyError:
            if "socket_group" in explicit and "socket_group" not in cfg.old_names:
                raise ConfigError("%s: socket_group '%s' does not exist (groupadd %s)"
                                  % (cfg.path, cfg.socket_group, cfg.socket_group)) from None
            # The first hostlink warned and left the socket in the daemon's group: fewer may connect.
            cfg.notices.append("%s: group '%s' does not exist; the socket keeps the daemon's "
                               "group (groupadd %s)" % (cfg.path, cfg.socket_group, cfg.socket_group))
            cfg.socket_group = ""


MIN_TOKEN = 16  # characters; the first hostlink's own test tokens have 26, hostlink-install makes 64


def check_file(path, st, secret=False):
    """Refuse a file hostlinkd trusts (``st`` its fstat) that another user could change, or, when
    it holds a ``secret``, read: sshd's StrictModes, with the command that fixes it."""
    if st.st_uid not in (0, os.getuid()):
        raise ConfigError("%s is owned by uid %d, who could change what hostlinkd trusts; run: "
                          "chown root %s" % (path, st.st_uid, path))
    mode = stat.S_IMODE(st.st_mode)
    if secret and mode & 0o077:
        from . import private
        raise NotPrivate("%s holds a token or key but its mode is %04o (%s): %s must not read it; "
                         "run: %s (or hostlink-install doctor --fix)"
                         % (path, mode, private.owners(st), private.readers(st),
                            private.fix(path, st)), path)
    if mode & 0o022:
        raise ConfigError("%s is writable by group or others (mode %04o); run: chmod go-w %s"
                          % (path, mode, path))


def check_private(path):
    """Refuse a secret-holding file (a token or key) that is not private to root."""
    check_file(path, os.stat(path), secret=True)


def _read(path, what):
    """(text, fstat) of the file ``path``: checked and read on one descriptor."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), os.fstat(f.fileno())
    except OSError as exc:
        raise ConfigError("cannot read %s %s: %s" % (what, path, exc.strerror)) from None
    except UnicodeDecodeError:
        raise ConfigError("%s is not UTF-8 text" % path) from None


def load(path=DEFAULT_PATH):
    """Read, parse and check a hostlink.conf and the token it names; ConfigError if unusable."""
    text, st = _read(path, "the configuration")
    cfg = parse(text, path)
    inline = bool(cfg.auth_token) or any(c.token for c in cfg.clients.values())
    check_file(path, st, secret=inline)
    cfg.auth_token = _token(cfg.auth_token, cfg.auth_token_file, path)
    if cfg.auth_token and len(cfg.auth_token) < MIN_TOKEN:
        raise ConfigError("%s: auth_token needs at least %d characters; generate one with: "
                          "python3 -c 'import secrets; print(secrets.token_hex(32))'"
                          % (path, MIN_TOKEN))
    for client in cfg.clients.values():
        client.token = _token(client.token, client.token_file, client.where)
        if len(client.token) < MIN_TOKEN:
            raise ConfigError("%s: client %s needs a token of at least %d characters"
                              % (client.where, client.name, MIN_TOKEN))
    if cfg.tcp_enabled and cfg.tls != "off" and os.path.exists(cfg.tls_key):
        check_private(cfg.tls_key)
    _load_policy_dir(cfg)
    if not cfg.auth_token and not cfg.clients:
        raise ConfigError("%s: no auth_token set; generate one with: "
                          "python3 -c 'import secrets; print(secrets.token_hex(32))'" % path)
    return cfg


def _token(token, token_file, where):
    """The token given inline or in its file, which must be root's and private (StrictModes)."""
    if not token_file:
        return token
    if token:
        raise ConfigError("%s: set the token or its token file, not both" % where)
    text, st = _read(token_file, "token file")
    check_file(token_file, st, secret=True)
    return text.strip()


def _load_policy_dir(cfg):
    """The exact records that hostlink-approve --always wrote: ``CLIENT.json``, a JSON document
    {"client": NAME, "always": [{"request": ..., "exe": ..., "files": ...}]} (approvals.store).

    A ``CLIENT.conf`` of an older hostlinkd (``always = JSON`` lines, written as text joined with
    the request) is not read: its rules name no executable identity, and a newline in an approved
    command could add lines to it. A notice says so; approve those requests again."""
    import json
    try:
        check_file(cfg.policy_dir, os.stat(cfg.policy_dir))
        names = sorted(os.listdir(cfg.policy_dir))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (cfg.policy_dir, exc.strerror)) from None
    for name in names:
        path = os.path.join(cfg.policy_dir, name)
        if name.endswith(".conf"):
            cfg.notices.append("%s: always rules of an older hostlinkd are no longer read (they "
                               "do not name the executable they ran); approve again with "
                               "hostlink-approve approve --always" % path)
            continue
        if not name.endswith(".json") or name.startswith("."):
            continue
        text, st = _read(path, "the policy record file")
        check_file(path, st)
        try:
            doc = json.loads(text)
            client = doc["client"]
            records = doc["always"]
            if not isinstance(client, str) or not isinstance(records, list) or not all(
                    isinstance(r, dict) and isinstance(r.get("request"), dict)
                    and isinstance(r.get("exe"), dict) and isinstance(r.get("files", {}), dict)
                    for r in records):
                raise ValueError("unexpected structure")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError("%s: not a policy record file written by hostlink-approve (%s)"
                              % (path, exc)) from None
        cfg.always.setdefault(client, []).extend(records)


def clients(cfg):
    """Every client: the default one of auth_token (no restrictions) and the [client] sections."""
    out = list(cfg.clients.values())
    if cfg.auth_token:
        default = Client("default", cfg.path)
        default.token = cfg.auth_token
        out.insert(0, default)
    return out
