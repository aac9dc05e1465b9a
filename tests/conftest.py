"""Shared fixtures: the real client zipapp, and real hostlinkd processes on temporary sockets."""

import os
import signal
import subprocess
import sys
import time

import pytest

from hostlink import zipapp

# No registry here: Ryuk (testcontainers' reaper image) cannot be pulled; the e2e suite removes
# what it made by label instead. The legacy builder is what this engine has.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("DOCKER_BUILDKIT", "0")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The first hostlink's own source (C, v1.6): a checkout or a bare git directory of it.
FIRST_SRC = os.environ.get("HOSTLINK_FIRST_SRC", "/work/.mirror/jebadiahgreenwood+hostlink/repo")


@pytest.fixture(scope="session")
def client_app(tmp_path_factory):
    """Path of the client zipapp, built from this checkout's modules."""
    return zipapp.build(str(tmp_path_factory.mktemp("client") / "hostlink"))


@pytest.fixture(scope="session")
def first_hostlink(tmp_path_factory):
    """The first hostlink built from its own source: a tree with build/hostlinkd,
    build/hostlink-cli, its tests/ and its example files. Skipped, loudly, without the source."""
    if not os.path.exists(FIRST_SRC):
        pytest.skip("THE FIRST HOSTLINK'S SOURCE IS NOT HERE (%s; set HOSTLINK_FIRST_SRC to a checkout "
                    "or git directory of it): the takeover and its own suites are NOT tested" % FIRST_SRC)
    tree = tmp_path_factory.mktemp("first-hostlink")
    if os.path.isdir(os.path.join(FIRST_SRC, "src")):
        subprocess.run(["cp", "-a", FIRST_SRC + "/.", str(tree)], check=True)
    else:
        archive = subprocess.run(["git", "-C", FIRST_SRC, "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    r = subprocess.run(["./build.sh", "release"], cwd=str(tree), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, "building the first hostlink failed: %s" % (r.stdout + r.stderr)[-2000:]
    return tree


def hostlink_user():
    """The group and user hostlink, as the first hostlink's install.sh makes them."""
    import grp
    import pwd
    try:
        grp.getgrnam("hostlink")
    except KeyError:
        subprocess.run(["groupadd", "--system", "hostlink"], check=True)
    try:
        pwd.getpwnam("hostlink")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--gid", "hostlink", "hostlink"], check=True)
    return pwd.getpwnam("hostlink")


class Daemon:
    """A hostlinkd process on a temporary socket, and the client pointed at it."""

    def __init__(self, base, client_app, conf_extra=""):
        self.base = base
        self.client_app = client_app
        self.socket = str(base / "run" / "hostlink.sock")
        self.token = "tok-" + os.urandom(8).hex()
        self.conf = base / "hostlink.conf"
        self.audit = base / "audit.log"
        self.log = base / "daemon.log"
        self.write_conf(conf_extra)
        self.proc = None

    def write_conf(self, extra="", token=None):
        self.token = token or self.token
        self.conf.write_text(
            "# written by the test suite\n"
            "auth_token = %s\nshell = /bin/bash\nsocket = %s\naudit_log = %s\n"
            "admin_socket = %s\n%s\n"
            % (self.token, self.socket, self.audit, self.base / "admin" / "admin.sock", extra))
        os.chmod(self.conf, 0o600)

    def start(self, wait=True):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostlink.daemon", "-c", str(self.conf)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("hostlinkd exited %s: %s" % (self.proc.returncode, self.log.read_text()))
            if os.path.exists(self.socket) and self.run("ping").returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError("hostlinkd did not answer within %ss: %s" % (timeout, self.log.read_text()))

    def env(self, **extra):
        env = {"PATH": os.environ["PATH"], "HOSTLINK_SOCKET": self.socket,
               "HOSTLINK_TOKEN": self.token, "HOME": str(self.base)}
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def cmd(self, *args):
        return [self.client_app, *args]

    def run(self, *args, input=None, env=None, timeout=30, **kw):
        """Run the client zipapp as its own process; a CompletedProcess with bytes."""
        return subprocess.run(self.cmd(*args), input=input, env=env or self.env(),
                              capture_output=True, timeout=timeout, **kw)

    def popen(self, *args, env=None, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.cmd(*args), env=env or self.env(), **kw)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def audit_lines(self, until=None):
        """The audit records; with ``until``, once until(records) holds (the daemon writes a
        record when the connection has closed, which may be just after the client exits)."""
        import json

        def read():
            if not self.audit.exists():
                return []
            return [json.loads(line) for line in self.audit.read_text().splitlines()]
        if until is None:
            return read()
        return wait_for(lambda: until(read()) and read(), 10, "audit records")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def make_daemon(tmp_path, client_app):
    """Factory: make_daemon(conf_extra) -> a started Daemon; all are stopped afterwards."""
    made = []
    cleanup = []

    def make(conf_extra="", start=True, name="d", public=False):
        if public:  # reachable by other users: pytest's own tmp root is 0700
            import pathlib
            import tempfile
            base = pathlib.Path(tempfile.mkdtemp(prefix="hostlink-test-"))
            os.chmod(base, 0o755)
            cleanup.append(base)
        else:
            base = tmp_path / ("%s%d" % (name, len(made)))
            base.mkdir()
        d = Daemon(base, client_app, conf_extra)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.stop()
    import shutil
    for base in cleanup:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemon(make_daemon):
    """One running hostlinkd with default settings."""
    return make_daemon()


def wait_for(predicate, timeout=10, what="condition"):
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
