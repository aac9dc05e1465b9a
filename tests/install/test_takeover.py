"""hostlink-install host over a first-hostlink install (built from its own source, in a --root):
its conf, token, socket and run_as_user are kept, its C client keeps working against hostlinkd,
and uninstall brings its conf and its daemon back."""

import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys

import pytest

from hostlink.install.first_hostlink import running
from hostlink.install.takeover import runnable_by
from tests.conftest import ROOT, hostlink_user, wait_for
from tests.install.test_host import install


class OldInstall:
    """The state its install.sh leaves, under ``root``: its conf from its example (token made,
    unix_path set, as install.sh's sed does; 0640 root:hostlink), its binaries, its daemon."""

    def __init__(self, src, root):
        self.root = root
        self.user = hostlink_user()
        self.token = secrets.token_hex(32)
        self.etc = root / "etc/hostlink"
        self.conf = self.etc / "hostlink.conf"
        self.sock = root / "run/hostlink/hostlink.sock"
        self.bin = root / "usr/local/bin"
        for d in (self.etc, self.sock.parent, self.bin):
            d.mkdir(parents=True)
        example = (src / "hostlink.conf.example").read_text()
        example = example.replace("REPLACE_WITH_GENERATED_TOKEN", self.token)
        self.text = re.sub(r"(?m)^unix_path = .*$", "unix_path = %s" % self.sock, example)
        self.conf.write_text(self.text)
        os.chmod(self.conf, 0o640)
        os.chown(self.conf, 0, self.user.pw_gid)
        for name in ("hostlinkd", "hostlink-cli"):
            shutil.copy(src / "build" / name, self.bin / name)
        # Its daemon drops to run_as_user before it writes its pid file here.
        os.chown(self.sock.parent, 0, self.user.pw_gid)
        os.chmod(self.sock.parent, 0o770)
        (self.etc / "targets.conf").write_text(
            "[desktop]\ntransport = unix\nsocket = %s\ntoken = %s\n" % (self.sock, self.token))
        os.chmod(self.etc / "targets.conf", 0o600)

    def start(self):
        subprocess.run([str(self.bin / "hostlinkd"), "-c", str(self.conf), "-p",
                        str(self.sock.parent / "hostlink.pid")], check=True, timeout=30)
        wait_for(lambda: self.cli("ping").returncode == 0, 10, "the first hostlink's daemon")

    def cli(self, *args, token=None):
        """Its own client, with the old token."""
        return subprocess.run([str(self.bin / "hostlink-cli"), "-s", str(self.sock), "-k",
                               token or self.token, *args], capture_output=True, timeout=60)

    def stop(self):
        for pid, _, _ in running(str(self.conf)):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture
def public_dir():
    """A directory other users can reach (pytest's own temporary root is 0700)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="hostlink-test-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def old(first_hostlink, tmp_path):
    o = OldInstall(first_hostlink, tmp_path / "root")
    o.start()
    yield o
    install("uninstall", "--root", str(o.root), check=False)
    o.stop()


def test_dry_run_shows_the_takeover_and_changes_nothing(old):
    before = old.conf.read_bytes()
    r = install("host", "--root", str(old.root), "--dry-run")
    out = r.stdout
    for line in ("-unix_path = %s" % old.sock, "+socket = %s" % old.sock, "+run_as_user = hostlink",
                 " auth_token = %s" % old.token, "-max_concurrent_io = 4", "+socket_group = hostlink",
                 "kept: run_as_user = hostlink: commands run as hostlink",
                 "dropped: max_concurrent_io", "was 0640 root:hostlink, so group hostlink could read",
                 "-> %s.first-hostlink" % old.conf):
        assert line in out, line
    assert "-auth_token" not in out  # the same token, kept in place
    assert old.conf.read_bytes() == before and stat.S_IMODE(old.conf.stat().st_mode) == 0o640
    assert not os.path.exists(str(old.conf) + ".first-hostlink")
    assert old.cli("ping").returncode == 0  # its daemon still runs


def test_takeover_keeps_its_client_working_then_uninstall_brings_it_back(old, tmp_path, public_dir):
    r = r_install = install("host", "--root", str(old.root))
    assert "stopped its hostlinkd (pid" in r.stdout and "started hostlinkd in the background" in r.stdout
    assert not running(str(old.conf))
    # Its conf kept beside, ours 0600 with its settings under our names.
    backup = old.etc / "hostlink.conf.first-hostlink"
    assert backup.read_text() == old.text and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(old.conf.stat().st_mode) == 0o600 and old.conf.stat().st_gid == 0
    conf = old.conf.read_text()
    for line in ("auth_token = %s" % old.token, "socket = %s" % old.sock, "node_name = desktop",
                 "run_as_user = hostlink", "max_concurrent = 8", "socket_mode = 0660"):
        assert "\n%s\n" % line in conf, line
    # Its C client, the old token, hostlinkd: commands run as its run_as_user.
    r = old.cli("exec", "id -un")
    assert (r.returncode, r.stdout) == (0, b"hostlink\n"), r.stderr
    assert old.cli("ping").stdout.startswith(b"[desktop] pong")
    # -j keeps what its conf caps (default_max_output_bytes = 4 MiB), as it did.
    r = old.cli("-j", "exec", "head -c 5000000 /dev/zero | tr '\\0' x")
    out = json.loads(r.stdout)
    assert (len(out["stdout"]), out["stdout_truncated"], out["stdout_original_bytes"]) == \
        (4194304, True, 5000000)
    if runnable_by(sys.executable, "hostlink"):
        # Transfers run as its run_as_user too.
        drop = public_dir
        os.chown(drop, old.user.pw_uid, old.user.pw_gid)
        src = tmp_path / "blob"
        src.write_bytes(os.urandom(300000))
        assert old.cli("put", str(src), os.path.join(drop, "blob")).returncode == 0
        assert os.stat(os.path.join(drop, "blob")).st_uid == old.user.pw_uid
        assert old.cli("get", os.path.join(drop, "blob"), str(tmp_path / "back")).returncode == 0
        assert (tmp_path / "back").read_bytes() == src.read_bytes()
    else:  # this machine's Python is in a directory hostlink may not enter: the installer says so
        assert "warning: hostlink cannot run %s, so transfers" % sys.executable in r_install.stdout
    # Its targets.conf, unchanged, through our client too.
    env = {"PATH": os.environ["PATH"], "HOSTLINK_TARGETS": str(old.etc / "targets.conf")}
    ours = subprocess.run([str(old.bin / "hostlink-cli"), "-t", "desktop", "exec", "echo via-target"],
                          env=env, capture_output=True, timeout=30)
    assert ours.stdout == b"via-target\n", ours.stderr
    # Run again: nothing changes, the takeover is remembered.
    again = install("host", "--root", str(old.root))
    assert "unchanged %s" % old.conf in again.stdout and "stay as taken over" in again.stdout
    # Uninstall: its conf as it was, its daemon again, the old token still its.
    r = install("uninstall", "--root", str(old.root))
    assert "restored %s" % old.conf in r.stdout and "started its hostlinkd again" in r.stdout
    assert old.conf.read_text() == old.text and not backup.exists()
    st = old.conf.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, old.user.pw_gid)
    wait_for(lambda: old.cli("ping").returncode == 0, 10, "its daemon, started again")
    assert running(str(old.conf))


def test_its_example_conf_starts_hostlinkd_unchanged_after_the_mode_fix(first_hostlink, tmp_path):
    root = tmp_path / "root"
    conf = root / "etc/hostlink/hostlink.conf"
    conf.parent.mkdir(parents=True)
    shutil.copy(first_hostlink / "hostlink.conf.example", conf)
    os.chmod(conf, 0o640)
    os.chown(conf, 0, hostlink_user().pw_gid)
    check = [sys.executable, "-m", "hostlink.daemon", "--check-config", "-c", str(conf)]
    r = subprocess.run(check, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "mode is 0640 (root:hostlink): group hostlink must not read it; " \
        "run: chmod 600 %s" % conf in r.stderr, r.stderr
    r = install("doctor", "--root", str(root), "--fix", check=False)
    assert "fixed %s: mode 0640 (root:hostlink) -> 0600" % conf in r.stdout, r.stdout + r.stderr
    assert "ok   configuration" in r.stdout and stat.S_IMODE(conf.stat().st_mode) == 0o600
    r = subprocess.run(check, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "'max_concurrent_io' is ignored" in r.stderr
    # And it runs: its own client reaches hostlinkd on a socket of the test's.
    sock = tmp_path / "s.sock"
    conf.write_text(conf.read_text().replace("/run/hostlink/hostlink.sock", str(sock)))
    proc = subprocess.Popen([sys.executable, "-m", "hostlink.daemon", "-c", str(conf)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cli = [str(first_hostlink / "build/hostlink-cli"), "-s", str(sock), "-k",
               "REPLACE_WITH_GENERATED_TOKEN"]
        wait_for(lambda: subprocess.run(cli + ["ping"], capture_output=True).returncode == 0, 10,
                 "hostlinkd on its example conf")
        r = subprocess.run(cli + ["exec", "id -un"], capture_output=True, timeout=30)
        assert r.stdout == b"hostlink\n"  # its run_as_user
    finally:
        proc.terminate()
        proc.wait(30)
