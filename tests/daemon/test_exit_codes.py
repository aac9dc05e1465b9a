"""Exit codes a shell expects: 128+N after the signal N we forwarded ended the command, 127 for a
program not found, transfer errors in plain words with one exit code per kind."""

import json
import os
import signal
import subprocess

import pytest

from tests.conftest import pid_alive, wait_for


def _started(proc):
    """The host pid the command printed as its first line: it runs, and we may signal."""
    return int(proc.stdout.readline())


@pytest.mark.parametrize("flags, sig, code", [
    ((), signal.SIGINT, 130), (("--relay",), signal.SIGINT, 130), (("-x",), signal.SIGINT, 130),
    ((), signal.SIGTERM, 143), (("--relay",), signal.SIGHUP, 129),
])
def test_a_forwarded_signal_that_ends_the_command_gives_128_plus_n(daemon, flags, sig, code):
    proc = daemon.popen("exec", *flags, "echo $$; exec sleep 60")
    pid = _started(proc)
    proc.send_signal(sig)
    assert proc.wait(20) == code, proc.stderr.read()
    assert proc.stderr.read() == b""  # a shell says nothing either
    wait_for(lambda: not pid_alive(pid), 10, "the remote command to end")


def test_json_reports_the_signal_and_exits_130(daemon):
    proc = daemon.popen("-j", "exec", "exec sleep 60.5")
    # -j captures the output until the end: look for the command on the host instead.
    wait_for(lambda: subprocess.run(["pgrep", "-f", "^sleep 60.5$"], capture_output=True).returncode == 0,
             10, "the command to run")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130
    result = json.loads(out)
    assert (result["exit_code"], result["signal"]) == (130, 2)


def test_a_command_that_handles_the_signal_keeps_its_own_status(daemon):
    proc = daemon.popen("exec", "trap 'exit 0' INT; echo $$; sleep 60 & wait")
    _started(proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0


def test_missing_program_is_127_in_every_mode(daemon, tmp_path):
    r = daemon.run("-x", "exec", "--argv", "nosuchprog-hl", "a")
    assert r.returncode == 127 and r.stderr == b"hostlink: nosuchprog-hl: command not found on the host\n"
    r = daemon.run("exec", "--argv", "nosuchprog-hl")
    assert r.returncode == 1 and b"command not found on the host" in r.stderr
    r = daemon.run("-j", "exec", "--argv", "nosuchprog-hl")
    assert r.returncode == 1 and json.loads(r.stdout)["exit_code"] == 127
    r = daemon.run("-x", "exec", "nosuchprog-hl")  # a shell string: the shell's own 127
    assert r.returncode == 127
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    r = daemon.run("-x", "exec", "--argv", str(script))
    assert r.returncode == 126 and b"Permission denied" in r.stderr
    shims = tmp_path / "bin"
    shims.mkdir()
    app = shims / "hostlink"
    app.write_bytes(open(daemon.client_app, "rb").read())
    os.chmod(app, 0o755)
    subprocess.run([str(app), "shim", "install", "nosuchprog-hl"], check=True, capture_output=True)
    r = subprocess.run([str(shims / "nosuchprog-hl")], capture_output=True, env=daemon.env())
    assert r.returncode == 127, r.stderr


def test_transfer_errors_in_plain_words_one_code_per_kind(daemon, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    (here / "f").write_text("data\n")
    cases = [
        # a path that does not exist, on either side: 1
        (["cp", "host:%s" % (tmp_path / "missing"), str(here)], 1,
         "%s does not exist on the host" % (tmp_path / "missing")),
        (["cp", "host:%s" % (tmp_path / "no" / "dir" / "f"), str(here)], 1,
         "hostlink: %s does not exist on the host" % (tmp_path / "no" / "dir")),
        (["cp", str(here / "missing"), "host:%s" % tmp_path], 1,
         "%s does not exist here" % (here / "missing")),
        (["cp", "host:%s" % (here / "f"), str(tmp_path / "no" / "dir" / "f")], 1,
         "%s does not exist here" % (tmp_path / "no" / "dir")),
        (["cp", str(here / "f"), "host:%s" % (tmp_path / "no" / "dir" / "f")], 1,
         "%s does not exist on the host" % (tmp_path / "no" / "dir")),
        (["cp", str(here), "host:%s" % (tmp_path / "no" / "dir" / "f")], 1,
         "%s does not exist on the host" % (tmp_path / "no" / "dir")),
        # bad arguments: 7
        (["cp", str(here / "f")], 7, "a transfer takes two paths: SRC DST"),
        (["cp", str(here / "f"), str(tmp_path / "g")], 7, "cp wants one side on the host"),
    ]
    for args, code, said in cases:
        r = daemon.run(*args)
        assert r.returncode == code and said.encode() in r.stderr, (args, r.stderr)
        assert b"Errno" not in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
