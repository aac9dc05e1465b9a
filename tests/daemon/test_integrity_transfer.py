"""Issue 15, transfers and files: each class of attack that once worked, run as an unprivileged
user (uid 65534) against a real hostlinkd running as root, now refused or harmless.

The attacker is a client whose policy confines it to a directory it owns (``cwd_allow``); its
commands run as root (no ``run_as``), as on a host where an agent may only touch its workspace.
"""

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import threading

import pytest

from tests.conftest import ROOT

NOBODY = 65534
TOKEN = "boxed-token-0123456789abcdef"
# Speaks the protocol itself, as an attacker would: any cwd, any argv, and a hook on Started.
ATTACK = r'''
import json, os, sys
from hostlink.client.errors import HostlinkError
from hostlink.client.session import Endpoint, Session
from hostlink.wire.protocol import Exec
spec = json.loads(sys.argv[1])

class Racing(Session):
    def handle(self, event, out):
        if type(event).__name__ == "Started" and spec.get("swap"):
            here, there = spec["swap"]  # the path was checked; now point it elsewhere
            os.rename(here, here + ".old")
            os.symlink(there, here)
        return super().handle(event, out)

ep = Endpoint(socket=os.environ["HOSTLINK_SOCKET"], token=os.environ["HOSTLINK_TOKEN"])
out = os.open(spec["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if spec.get("out") else 1
inp = os.open(spec["in"], os.O_RDONLY) if spec.get("in") else 0
try:
    with Racing(ep) as s:
        r = s.exec(Exec(argv=tuple(spec["argv"]), xfer=spec["xfer"], cwd=spec.get("cwd", ""),
                        mode="fds"), stdio=(inp, out, 2))
except HostlinkError as exc:
    sys.stderr.write(exc.message + "\n")
    sys.exit(exc.exit_code)
sys.exit(r.returncode)
'''


class Arena:
    """A public daemon, a jail that uid 65534 owns and may transfer into, and ways to attack."""

    def __init__(self, make_daemon, extra=""):
        self.d = make_daemon(start=False, public=True)
        self.base = self.d.base
        self.jail = self.base / "jail"
        self.jail.mkdir()
        os.chown(self.jail, NOBODY, NOBODY)
        self.d.write_conf("socket_mode = 0666\n[client boxed]\ntoken = %s\nallow = /usr/bin/true\n"
                          "cwd_allow = %s\n%s" % (TOKEN, self.jail, extra))
        self.d.start()
        os.chmod(os.path.dirname(self.d.socket), 0o755)
        self.app = self.base / "hostlink"
        self.app.write_bytes(open(self.d.client_app, "rb").read())
        os.chmod(self.app, 0o755)
        (self.base / "attack.py").write_text(ATTACK)
        self.env = {"PATH": "/usr/bin:/bin", "HOSTLINK_SOCKET": self.d.socket,
                    "HOSTLINK_TOKEN": TOKEN, "HOME": str(self.jail)}

    def as_nobody(self, argv, **kw):
        return subprocess.run(argv, env=kw.pop("env", self.env), capture_output=True, user=NOBODY,
                              group=NOBODY, extra_groups=[], cwd=str(self.jail), timeout=60, **kw)

    def client(self, *args, **kw):
        """The real client file, run by uid 65534."""
        return self.as_nobody([str(self.app), *args], **kw)

    def attack(self, **spec):
        """A hand-made request from uid 65534 (the client file's modules, nothing else)."""
        env = dict(self.env, PYTHONPATH=str(self.app))
        return self.as_nobody(["/usr/bin/python3", "-S", str(self.base / "attack.py"),
                               json.dumps(spec)], env=env)

    def plant(self, *parts, data=None):
        """A directory (or with ``data`` a file) in the jail, owned by the attacker."""
        path = self.jail.joinpath(*parts)
        if data is None:
            path.mkdir(parents=True)
        else:
            path.write_bytes(data)
        while path != self.jail:
            os.chown(path, NOBODY, NOBODY)
            path = path.parent
        return self.jail.joinpath(*parts)


@pytest.fixture
def arena(make_daemon):
    return Arena(make_daemon)


def test_a_planted_module_never_runs_in_the_transfer_helper(arena):
    # hostlink/__init__.py in a directory the client owns: `python3 -m` once imported it, as root.
    evil = arena.plant("evil")
    arena.plant("evil", "hostlink")
    marker = arena.jail / "pwned"
    arena.plant("evil", "hostlink", "__init__.py",
                data=b"open(%r, 'w').write(str(__import__('os').getuid()))\n" % str(marker).encode())
    outside = arena.base / "outside"
    outside.mkdir()
    os.chown(outside, NOBODY, NOBODY)
    (outside / "hostlink").symlink_to(evil / "hostlink")
    inside = arena.attack(xfer="df", argv=[str(arena.jail)], cwd=str(evil))
    elsewhere = arena.attack(xfer="df", argv=[str(arena.jail)], cwd=str(outside))
    assert not marker.exists(), "the planted module ran as uid %s" % marker.read_text()
    assert inside.returncode == 0, inside.stderr  # the transfer itself still works
    assert elsewhere.returncode == 6 and b"may not work in" in elsewhere.stderr, elsewhere.stderr


def test_the_helper_runs_as_the_run_as_user(make_daemon):
    # Its first instruction runs as that user: the interpreter is one the user may run (not
    # pyenv's under /root), the package is read from the daemon's own location.
    if not all(os.stat(p).st_mode & 0o5 == 0o5 for p in (ROOT, os.path.dirname(ROOT))):
        pytest.skip("this checkout (%s) is not readable by other users" % ROOT)
    arena = Arena(make_daemon, "run_as = nobody\n")
    arena.plant("f", data=b"mine\n")
    r = arena.client("put", str(arena.jail / "f"), str(arena.jail / "copy"))
    assert r.returncode == 0, r.stderr
    assert os.stat(arena.jail / "copy").st_uid == NOBODY


def test_a_path_swapped_after_the_check_is_never_followed(arena):
    vault = arena.base / "vault"
    vault.mkdir()
    (vault / "secret").write_text("TOPSECRET\n")
    os.chmod(vault / "secret", 0o600)
    rootonly = arena.base / "rootonly"
    rootonly.mkdir(mode=0o700)
    arena.plant("d")
    arena.plant("d", "secret", data=b"decoy\n")
    got = arena.jail / "got"
    read = arena.attack(xfer="send", argv=[str(arena.jail / "d" / "secret"), "--raw"],
                        out=str(got), swap=[str(arena.jail / "d"), str(vault)])
    assert b"TOPSECRET" not in got.read_bytes(), "read a root-only file outside cwd_allow"
    assert read.returncode == 1 and b"refused" in read.stderr, read.stderr
    arena.plant("e")
    payload = arena.plant("payload", data=b"owned\n")
    wrote = arena.attack(xfer="receive", argv=[
        str(arena.jail / "e" / "planted"), "--file", "planted", "--file-mode", "644", "--mtime", "0"],
        swap=[str(arena.jail / "e"), str(rootonly)], **{"in": str(payload)})
    assert os.listdir(rootonly) == [], "wrote into a root-only directory outside cwd_allow"
    assert wrote.returncode == 1 and b"refused" in wrote.stderr, wrote.stderr


def test_put_strips_setuid_setgid_and_sticky(arena):
    arena.plant("src")
    tool = arena.plant("src", "tool", data=b"#!/bin/sh\nid\n")
    os.chmod(tool, 0o6755)
    r = arena.client("put", str(tool), str(arena.jail / "kept"))  # one file: its descriptor
    assert r.returncode == 0, r.stderr
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, mode in (("t", tarfile.DIRTYPE, 0o1777), ("t/sh", tarfile.REGTYPE, 0o4755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size = kind, mode, 2 if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(b"hi") if kind == tarfile.REGTYPE else None)
    r = arena.client("cp", "-", "host:%s" % arena.jail, input=buf.getvalue())
    assert r.returncode == 0, r.stderr
    modes = {p: stat.S_IMODE(os.lstat(arena.jail / p).st_mode) for p in ("kept", "t", "t/sh")}
    assert modes == {"kept": 0o755, "t": 0o777, "t/sh": 0o755}, {k: oct(v) for k, v in modes.items()}
    assert os.stat(arena.jail / "kept").st_uid == 0  # root wrote it: with the bit, a root shell


def test_a_refused_tar_stream_leaves_nothing_behind(arena):
    arena.plant("tree")
    (arena.jail / "tree" / "d").symlink_to("/etc")
    before = sorted(os.listdir(arena.jail)), sorted(os.listdir(arena.jail / "tree"))

    def stream(*members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, link in members:
                info = tarfile.TarInfo(name)
                if link:
                    info.type, info.linkname = tarfile.SYMTYPE, link
                    tar.addfile(info)
                else:
                    info.size = 2
                    tar.addfile(info, io.BytesIO(b"hi"))
        return buf.getvalue()
    slip = arena.client("cp", "-", "host:%s" % arena.jail,
                        input=stream(("first/ok.txt", ""), ("first/link", "/etc/passwd"),
                                     ("../escaped", "")))
    assert slip.returncode != 0 and b"leaves the destination" in slip.stderr, slip.stderr
    through = arena.client("cp", "-", "host:%s" % arena.jail,
                           input=stream(("tree/new.txt", ""), ("tree/d/hostlink-x", "")))
    assert through.returncode != 0 and b"never followed" in through.stderr, through.stderr
    assert (sorted(os.listdir(arena.jail)), sorted(os.listdir(arena.jail / "tree"))) == before
    assert not os.path.exists("/etc/hostlink-x") and not (arena.base / "escaped").exists()


def test_files_another_user_could_change_are_refused(make_daemon, tmp_path):
    d = make_daemon(start=False)

    def check(conf_extra, conf_mode=0o600):
        d.write_conf(conf_extra)
        os.chmod(d.conf, conf_mode)
        return subprocess.run([sys.executable, "-m", "hostlink.daemon", "-c", str(d.conf),
                               "--check-config"], capture_output=True, cwd=ROOT)
    tok = tmp_path / "token"
    tok.write_text("file-token-0123456789abcdef\n")
    os.chmod(tok, 0o600)
    os.chown(tok, NOBODY, NOBODY)  # nobody could write its own token in
    r = check("[client f]\ntoken_file = %s\n" % tok)
    assert r.returncode == 2 and b"run: chown root %s" % bytes(tok) in r.stderr, r.stderr
    os.chown(tok, 0, 0)
    d.conf.write_text("socket = %s\n[client f]\ntoken_file = %s\n" % (d.socket, tok))
    os.chmod(d.conf, 0o666)  # no secret in it, but anyone could add a client
    r = subprocess.run([sys.executable, "-m", "hostlink.daemon", "-c", str(d.conf), "--check-config"],
                       capture_output=True, cwd=ROOT)
    assert r.returncode == 2 and b"run: chmod go-w" in r.stderr, r.stderr
    r = check("", 0o640)  # the first hostlink's install: root:hostlink 0640, token inside
    assert r.returncode == 2 and b"run: chmod 600 %s" % bytes(d.conf) in r.stderr, r.stderr
    drop = d.base / "policy.d"
    drop.mkdir()
    os.chown(drop, NOBODY, NOBODY)
    r = check("")
    assert r.returncode == 2 and b"run: chown root %s" % bytes(drop) in r.stderr, r.stderr
    os.chown(drop, 0, 0)
    d.write_conf("", token="short-token")
    r = check("")
    assert r.returncode == 2 and b"at least 16 characters" in r.stderr, r.stderr
    d.write_conf("", token="integration-test-token-xyz")  # the first hostlink's own
    assert check("").returncode == 0


def test_the_token_stays_out_of_the_command_line(make_daemon):
    d = make_daemon(public=True)
    tf = d.base / "token"
    tf.write_text(d.token + "\n")
    os.chmod(tf, 0o600)
    for args, env in ((("-k", "@%s" % tf), d.env(HOSTLINK_TOKEN=None)),
                      ((), d.env(HOSTLINK_TOKEN=None, HOSTLINK_TOKEN_FILE=str(tf))),
                      ((), d.env())):
        r = d.run(*args, "exec", "true", env=env)
        assert r.returncode == 0 and r.stderr == b"", r.stderr  # no warning without -k TOKEN
    literal = d.run("-k", d.token, "exec", "true", env=d.env(HOSTLINK_TOKEN=None))
    assert literal.returncode == 0 and literal.stderr.count(b"HOSTLINK_TOKEN_FILE") == 1
    bad = d.run("-k", "@%s" % (d.base / "missing"), "exec", "true")
    assert bad.returncode == 7 and b"cannot read the token file" in bad.stderr


def test_hlnk_target_with_a_fingerprint_never_sends_the_token_in_clear(make_daemon, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    heard = []

    def serve():
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            heard.append(conn.recv(65536))  # what the client sends first: a TLS hello, or its token
        except OSError:
            pass
        conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    targets = tmp_path / "targets.conf"
    targets.write_text("[old]\ntransport = tcp\naddress = 127.0.0.1\nport = %d\ntoken = %s\n"
                       "protocol = hlnk\ntls_fingerprint = sha256:%s\n"
                       % (listener.getsockname()[1], TOKEN, "ab" * 32))
    d = make_daemon(start=False)
    r = d.run("-F", str(targets), "-t", "old", "-C", "3000", "exec", "true",
              env=d.env(HOSTLINK_TOKEN=None))
    t.join(20)
    listener.close()
    assert r.returncode == 2, r.stderr
    assert TOKEN.encode() not in b"".join(heard)
