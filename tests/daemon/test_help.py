"""Help and near misses as git and docker users expect: printed here, never sent to the host."""

from tests.conftest import wait_for

COMMANDS = ["exec", "ping", "targets", "doctor", "cp", "put", "get", "df", "job", "shim", "help",
            "put-stream", "get-stream"]


def _requests(daemon):
    """The requests the daemon saw besides the fixture's first ping, once a last ``exec true``
    (not counted) has been audited: what came before it is audited too."""
    assert daemon.run("exec", "true").returncode == 0
    records = daemon.audit_lines(until=lambda rs: any(r.get("command") == "true" for r in rs))
    seen = [r for r in records if r.get("event") not in ("start", "reload", "stop")
            and r.get("command") != "true"]
    pings = [r for r in seen if r.get("event") == "ping"]
    assert len(pings) == 1, pings  # wait_ready's
    return [r for r in seen if r.get("event") != "ping"]


def test_every_command_has_help_that_never_reaches_the_host(daemon):
    for command in COMMANDS:
        for flag in ("--help", "-h"):
            r = daemon.run(command, flag)
            assert r.returncode == 0, (command, r.stderr)
            assert r.stdout.startswith(b"usage: hostlink ") and command.split("-")[0].encode() in r.stdout
            assert r.stderr == b""
        assert daemon.run("help", command).stdout == r.stdout  # hostlink help CMD says the same
    assert _requests(daemon) == []  # nothing was sent: no ping, no eval --help


def test_help_alone_and_before_a_command(daemon):
    r = daemon.run("help")
    assert r.returncode == 0 and b"commands:" in r.stdout and b"help [COMMAND]" in r.stdout
    assert daemon.run("--help", "exec").stdout == daemon.run("exec", "--help").stdout
    r = daemon.run("help", "exce")
    assert r.returncode == 7 and b"did you mean 'exec'?" in r.stderr


def test_options_after_the_command_words_belong_to_the_command(daemon):
    r = daemon.run("exec", "-w", "/tmp", "--help")  # still options: help
    assert r.returncode == 0 and r.stdout.startswith(b"usage: hostlink [OPTIONS] exec")
    r = daemon.run("exec", "ls", "--help")  # ls's own --help, on the host
    assert r.returncode == 0 and b"Usage: ls" in r.stdout, r.stderr
    r = daemon.run("exec", "--", "--help")  # a program named --help, on the host
    assert r.returncode == 1 and b"--help: command not found" in r.stderr, r.stdout + r.stderr
    records = daemon.audit_lines(until=lambda rs: len([x for x in rs if x.get("event") == "exec"]) == 2)
    assert [x["command"] for x in records if x.get("event") == "exec"] == ["ls --help", "--help"]


NEAR_MISSES = [
    (["exce", "ls"], b"unknown command 'exce'; did you mean 'exec'?"),
    (["pnig"], b"unknown command 'pnig'; did you mean 'ping'?"),
    (["--josn", "ping"], b"unknown option '--josn'; did you mean '--json'?"),
    (["job", "wiat", "x"], b"unknown job action 'wiat'; did you mean 'wait'?"),
    (["job", "wait", "--folow", "x"], b"unknown job flag '--folow'; did you mean '--follow'?"),
    (["shim", "instal", "x"], b"unknown shim action 'instal'; did you mean 'install'?"),
    (["frobnicate"], b"unknown command 'frobnicate' (see hostlink help)"),
]


def test_a_near_miss_is_named(daemon):
    for args, said in NEAR_MISSES:
        r = daemon.run(*args)
        assert r.returncode == 7 and said in r.stderr, r.stderr
        assert r.stderr.count(b"\n") == 1  # one line, never a traceback
    assert _requests(daemon) == []


def test_job_wait_x_exits_with_the_jobs_own_status(daemon):
    ident = daemon.run("exec", "-D", "exit 3").stdout.decode().strip()
    assert ident, "no job id"
    wait_for(lambda: b"exited" in daemon.run("job", "status", ident).stdout, 10, "the job to end")
    assert daemon.run("job", "wait", "-x", ident).returncode == 3
    assert daemon.run("job", "wait", ident, "--exit-status").returncode == 3
    assert daemon.run("-x", "job", "wait", ident).returncode == 3
    assert daemon.run("job", "wait", ident).returncode == 1
