"""Integrity of the exec path (issue 15): a client with a narrow policy, connecting as an
unprivileged user (65534), tries to make hostlinkd run, read or write what its policy does not
allow. One working exploit per class, each refused or harmless now; each succeeded against the
code before the fix (3aaf71d).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, wait_for

TOKEN = "attacker-token-0123456789ab"
NOBODY = 65534


class Attacker:
    """A daemon reachable by uid 65534, a workspace that user owns, and a root-only place."""

    def __init__(self, d):
        self.d = d
        self.app = d.base / "hostlink"
        shutil.copy(d.client_app, self.app)
        self.ws = d.base / "ws"
        self.ws.mkdir()
        os.chown(self.ws, NOBODY, NOBODY)
        self.root_only = d.base / "rootonly"
        self.root_only.mkdir(mode=0o700)

    def run(self, *args, cwd=None, timeout=30):
        return subprocess.run([str(self.app), "-k", TOKEN, *args], env=self.d.env(),
                              capture_output=True, user=NOBODY, timeout=timeout,
                              cwd=str(cwd or self.ws))

    def popen(self, *args):
        return subprocess.Popen([str(self.app), "-k", TOKEN, *args], env=self.d.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, user=NOBODY,
                                cwd=str(self.ws))

    def plant(self, name, text, mode=0o755):
        """A file the attacker writes in its workspace (as uid 65534)."""
        path = self.ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, mode)
        for p in [path] + [q for q in path.parents if self.ws in q.parents]:
            os.chown(p, NOBODY, NOBODY)
        return path

    def approve(self, *args):
        return subprocess.run([sys.executable, "-m", "hostlink.daemon.admin_client", "--socket",
                               str(self.d.base / "admin" / "admin.sock"), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=30)

    def waiting(self):
        def find():
            r = self.approve("list", "--json")
            lines = [json.loads(line) for line in r.stdout.splitlines()]
            return lines[0] if lines else None
        return wait_for(find, 10, "a waiting request")


@pytest.fixture
def attacker(make_daemon):
    def make(rules, extra=""):
        d = make_daemon("socket_mode = 0666\napproval_timeout_ms = 8000\n%s\n[client attacker]\n"
                        "token = %s\n%s\n" % (extra, TOKEN, rules), public=True, start=False)
        a = Attacker(d)
        d.conf.write_text(d.conf.read_text().replace("@WS@", str(a.ws))
                          .replace("@ROOTONLY@", str(a.root_only)).replace("@BASE@", str(d.base)))
        d.start()
        os.chmod(d.socket.rsplit("/", 1)[0], 0o755)
        return a
    return make


def test_allow_rule_judges_the_program_that_runs(attacker):
    """allow = /usr/bin/git **, and git found through the client's own PATH (-e PATH=...): the
    old daemon judged /usr/bin/git (its own fixed PATH), the kernel ran the client's git."""
    a = attacker("allow = /usr/bin/git **\nenv_allow = PATH")
    marker = a.root_only / "pwned"
    a.plant("bin/git", "#!/bin/sh\nid -u > %s\n" % marker)
    r = a.run("-e", "PATH=%s/bin:/usr/bin:/bin" % a.ws, "-w", str(a.ws), "exec", "--argv",
              "git", "--version")
    assert r.returncode == 6 and b"no allow rule matches %s/bin/git" % str(a.ws).encode() in r.stderr
    assert not marker.exists()
    # What the rule names still runs, found the same way.
    r = a.run("-w", str(a.ws), "exec", "--argv", "git", "--version")
    assert r.returncode == 0 and r.stdout.startswith(b"git version"), r.stderr


def test_deny_rules_fail_closed(attacker):
    """deny = /usr/bin/rm **, and ./rm in /usr/bin: the old daemon resolved ./rm against its own
    directory, found nothing, skipped the deny rules, and the kernel ran /usr/bin/rm."""
    a = attacker("deny = /usr/bin/rm **")
    victim = a.root_only / "victim"
    victim.write_text("keep me\n")
    r = a.run("-w", "/usr/bin", "exec", "--argv", "./rm", "-f", str(victim))
    assert r.returncode == 6 and b"refused by rule deny = /usr/bin/rm" in r.stderr, r.stderr
    assert victim.exists()
    # A program that cannot be found is refused too: its rules cannot be checked.
    r = a.run("-w", "/usr/bin", "exec", "--argv", "./no-such-program")
    assert r.returncode == 6 and b"rules cannot be checked" in r.stderr


def test_argument_globs_never_match_across_dotdot(attacker):
    """allow = /usr/bin/cat PUBLIC/*: cat PUBLIC/../rootonly/secret read a root-only file."""
    a = attacker("allow = /usr/bin/cat @BASE@/public/*")
    (a.d.base / "public").mkdir()
    (a.d.base / "public" / "readme").write_text("public text\n")
    secret = a.root_only / "secret"
    secret.write_text("root's secret\n")
    os.chmod(secret, 0o600)
    r = a.run("exec", "--argv", "cat", "%s/public/../rootonly/secret" % a.d.base)
    assert r.returncode == 6 and b"root's secret" not in r.stdout
    r = a.run("exec", "--argv", "cat", "%s/public/readme" % a.d.base)
    assert r.stdout == b"public text\n", r.stderr


def test_approved_request_runs_where_and_what_was_approved(attacker):
    """While an approved-to-be request waits, the attacker re-points the directory symlink it
    asked for (into a root-only directory outside cwd_allow) and replaces the executable: the old
    daemon started on the re-resolved path, so what ran was not what the person approved."""
    a = attacker("ask = @WS@/tool **\ncwd_allow = @WS@")
    good = a.ws / "good"
    good.mkdir()
    os.chown(good, NOBODY, NOBODY)
    os.symlink(good, a.ws / "here")
    os.lchown(a.ws / "here", NOBODY, NOBODY)
    tool = a.ws / "tool"
    shutil.copy("/usr/bin/touch", tool)  # an ELF the attacker owns: run from its descriptor
    os.chown(tool, NOBODY, NOBODY)
    proc = a.popen("-w", str(a.ws / "here"), "exec", "--argv", str(tool), "made-here")
    pending = a.waiting()
    assert "made-here" in pending["text"] and pending["cwd"] == str(good)
    # The swap, as the attacker: the link now points into a root-only directory, and the tool
    # is now a script that writes elsewhere.
    swap = subprocess.run(
        ["/bin/sh", "-c", "ln -sfn %s here.new && mv -T here.new here && "
                          "printf '#!/bin/sh\\necho evil > /tmp/hostlink-evil-$$\\n' > tool.new && "
                          "chmod 755 tool.new && mv tool.new tool" % a.root_only],
        cwd=str(a.ws), user=NOBODY, capture_output=True)
    assert swap.returncode == 0, swap.stderr
    assert a.approve("approve", pending["id"]).returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert (good / "made-here").exists() and not (a.root_only / "made-here").exists()
    assert (good / "made-here").stat().st_uid == 0  # touch ran (as the daemon's user), not the script


@pytest.mark.parametrize("case", ["PYTHONPATH", "GIT_CONFIG"])
def test_environment_cannot_load_code(attacker, case):
    """An exactly-allowed command, hijacked through the environment: PYTHONPATH under no
    env_allow (any name was accepted), GIT_CONFIG_COUNT/core.fsmonitor under env_allow = GIT_*."""
    marker = "/tmp/hostlink-test-pwned-%d" % os.getpid()
    if os.path.exists(marker):
        os.unlink(marker)
    tools = None
    if case == "PYTHONPATH":
        a = attacker("allow = /usr/bin/python3* @BASE@/tools/tool.py")
        tools = a.d.base / "tools"
        tools.mkdir()
        (tools / "tool.py").write_text("import json\nprint('tool ran')\n")
        a.plant("json.py", "open(%r, 'w').write('pwned')\n" % marker)
        env = ["-e", "PYTHONPATH=%s" % a.ws]
        argv = ["/usr/bin/python3", str(tools / "tool.py")]
        cwd = "/"
    else:
        a = attacker("allow = /usr/bin/git status\nenv_allow = GIT_*")
        repo = a.d.base / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        env = ["-e", "GIT_CONFIG_COUNT=1", "-e", "GIT_CONFIG_KEY_0=core.fsmonitor",
               "-e", "GIT_CONFIG_VALUE_0=echo pwned > %s; false" % marker]
        argv = ["git", "status"]
        cwd = str(repo)
    try:
        r = a.run(*env, "-w", cwd, "exec", "--argv", *argv)
        assert r.returncode == 6 and b"load code" in r.stderr, (r.returncode, r.stderr)
        assert not os.path.exists(marker)
        r = a.run("-w", cwd, "exec", "--argv", *argv)  # without it, the command runs
        assert r.returncode == 0 and not os.path.exists(marker), r.stderr
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


def test_always_rules_bind_what_runs_and_cannot_be_injected(attacker):
    """Three ways the old --always failed: a newline in an approved argument injected an
    always rule into the drop-in (live after a reload); an always rule on a script the client
    owns was stored, and the client then rewrote the script; the request text reached the
    approver's terminal raw (escape sequences hid what was asked)."""
    a = attacker("ask = /usr/bin/echo **\nask = /usr/bin/touch **\nask = @WS@/*")
    victim = a.root_only / "injected"
    injected = json.dumps({"argv": ["touch", str(victim)], "cwd": str(a.ws), "env": []})
    # 1. The newline injection, and the terminal escape in the same request.
    proc = a.popen("-w", str(a.ws), "exec", "--argv", "echo",
                   "hi\x1b[2K\r\nalways = %s\n#" % injected)
    pending = a.waiting()
    listed = a.approve("list")
    assert "\x1b" not in listed.stdout and "\\x1b[2K" in listed.stdout
    assert "\x1b" not in pending["text"]
    r = a.approve("approve", pending["id"], "--always")
    assert r.returncode == 0 and "\x1b" not in r.stdout, r.stderr
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"\x1b" not in err  # the client's "waiting" line too
    a.d.signal(signal.SIGHUP)
    time.sleep(0.5)
    proc = a.popen("-w", str(a.ws), "exec", "--argv", "touch", str(victim))
    pending = a.waiting()  # it waits for a person: no rule was injected
    a.approve("deny", pending["id"])
    assert proc.wait(30) == 6 and not victim.exists()
    # 2. An always rule on a script the attacker can rewrite is refused.
    script = a.plant("job.sh", "#!/bin/sh\necho harmless\n")
    proc = a.popen("-w", str(a.ws), "exec", "--argv", str(script))
    pending = a.waiting()
    r = a.approve("approve", pending["id"], "--always")
    assert r.returncode == 1 and "can be changed by someone other than root" in r.stderr
    a.approve("deny", pending["id"])
    proc.wait(30)
    records = json.loads((a.d.base / "policy.d" / "attacker.json").read_text())["always"]
    assert [rec["request"]["argv"][0] for rec in records] == ["echo"]


def test_check_config_warns_about_rules_that_run_anything(make_daemon):
    """The documented allow = /usr/bin/git ** runs a shell through git -c alias.x=!cmd, and
    deny = /usr/bin/git push ** is passed by git -c x=y push: --check-config says so."""
    d = make_daemon("[client ci]\ntoken = %s\nallow = /usr/bin/git **\ndeny = /usr/bin/git push **\n"
                    "allow = /usr/bin/git status\n" % TOKEN, start=False)
    r = subprocess.run([sys.executable, "-m", "hostlink.daemon", "-c", str(d.conf), "--check-config"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0
    warnings = [line for line in r.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 2, r.stderr
    assert "allow = /usr/bin/git **" in warnings[0] and "-c" in warnings[0]
    assert "git -c x=y push" in warnings[1]
