"""A wait instead of busy: past max_concurrent a request waits in a bounded queue for a free slot
(daemon/slots.py), told after a second; --no-wait, a full queue and the deadline say busy (exit 4);
the place in the queue is given back on every path."""

import signal
import socket
import subprocess

from hostlink.wire import protocol as p
from tests.daemon.test_security import auth, error_code, raw

WAITING = b"hostlink: waiting for a free slot on %s (max_concurrent 1)...\n" % socket.gethostname().encode()


class Holder:
    """A command that holds a slot until released: cat with our stdin, ended by closing it."""

    def __init__(self, d):
        self.proc = d.popen("exec", "echo holding; cat >/dev/null", stdin=subprocess.PIPE)
        assert self.proc.stdout.readline() == b"holding\n"

    def release(self):
        self.proc.stdin.close()
        assert self.proc.wait(20) == 0


def waiter(d, *args, command="echo ran"):
    """A request that waits for a slot; returned once it said so."""
    proc = d.popen(*args, "exec", command)
    assert proc.stderr.readline() == WAITING
    return proc


def test_twenty_parallel_calls_with_sixteen_slots_all_succeed(make_daemon):
    d = make_daemon("max_concurrent = 16")
    procs = [d.popen("exec", "sleep 1; echo done %d" % i) for i in range(20)]
    results = [(proc.wait(60), proc.stdout.read()) for proc in procs]
    assert results == [(0, b"done %d\n" % i) for i in range(20)]


def test_a_waiter_is_told_and_runs_when_a_slot_frees(make_daemon):
    d = make_daemon("max_concurrent = 1")
    holder = Holder(d)
    proc = waiter(d)
    r = d.run("--no-wait", "exec", "echo ran")
    assert r.returncode == 4 and b"server busy" in r.stderr
    holder.release()
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out, err) == (0, b"ran\n", b"")


def test_the_queue_and_the_wait_are_bounded(make_daemon):
    d = make_daemon("max_concurrent = 1\nmax_queued = 1\nbusy_wait_ms = 5000")
    holder = Holder(d)
    first = waiter(d)
    r = d.run("exec", "echo never")
    assert r.returncode == 4 and b"1 waiting (max_concurrent = 1, max_queued = 1)" in r.stderr
    out, err = first.communicate(timeout=20)  # the holder never lets go: the deadline passes
    assert first.returncode == 4 and out == b""
    assert b"no free slot within 5000 ms (max_concurrent = 1, busy_wait_ms)" in err
    holder.release()
    assert d.run("--no-wait", "exec", "true").returncode == 0  # no slot was lost


def test_leaving_the_queue_gives_the_place_back(make_daemon, tmp_path):
    d = make_daemon("max_concurrent = 1\nmax_queued = 1")
    marker = tmp_path / "ran"
    holder = Holder(d)
    killed = waiter(d, command="touch %s" % marker)
    killed.kill()  # a hang-up while waiting
    killed.wait()
    d.audit_lines(until=lambda rs: any(r.get("result") == "disconnected" for r in rs))
    interrupted = waiter(d, command="touch %s" % marker)  # the place is free again
    interrupted.send_signal(signal.SIGINT)  # Ctrl-C while waiting: leave, exit 130
    assert interrupted.wait(20) == 130
    d.audit_lines(until=lambda rs: len([r for r in rs if r.get("result") == "disconnected"]) == 2)
    holder.release()
    assert d.run("--no-wait", "exec", "true").returncode == 0
    assert not marker.exists()  # neither ran: what left the queue never starts


def test_shutdown_tells_the_waiters_and_starts_nothing(make_daemon, tmp_path):
    d = make_daemon("max_concurrent = 1\nshutdown_grace_ms = 60000")
    marker = tmp_path / "ran"
    holder = Holder(d)
    proc = waiter(d, command="touch %s" % marker)
    d.signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and b"hostlinkd is shutting down" in err, err
    holder.release()  # the daemon waited for it, within its grace
    assert d.proc.wait(20) == 0
    assert not marker.exists()


def test_a_request_that_does_not_ask_to_queue_is_told_busy_at_once(make_daemon):
    # What a client before the queue sends (no "queue" field): busy at once, as it always was,
    # and never a Waiting it would read as an approval. One that asks is told it waits.
    d = make_daemon("max_concurrent = 1\nbusy_wait_ms = 1500")
    holder = Holder(d)
    answer = raw(d, auth(d) + p.encode(p.Exec(command="true", mode="relay")))
    assert _events(answer) == [p.Ok, p.Error] and error_code(answer) == "busy"
    answer = raw(d, auth(d) + p.encode(p.Exec(command="true", mode="relay", queue=True)))
    assert _events(answer) == [p.Ok, p.Waiting, p.Error] and error_code(answer) == "busy"
    assert b"kind\x00\x00\x00\x04slot" in answer
    holder.release()


def _events(answer):
    conn = p.Connection(p.CLIENT)
    conn.receive_data(answer)
    conn.receive_data(b"")
    out = []
    while True:
        event = conn.next_event()
        if event is None:
            return out
        out.append(type(event))


def test_every_failure_gives_its_slot_back(make_daemon, tmp_path):
    d = make_daemon("max_concurrent = 1\n[client limited]\ntoken = limited-client-token-1234\n"
                    "allow = /bin/true\n")
    assert d.run("exec", "--argv", "nosuchprog-hl").returncode == 1  # spawn failed
    assert d.run("-w", str(tmp_path / "gone"), "exec", "true").returncode == 1  # bad cwd
    assert d.run("-k", "limited-client-token-1234", "exec", "--argv", "ls").returncode == 6
    assert d.run("-T", "100", "exec", "sleep 5").returncode == 5  # timed out
    for _ in range(3):
        assert d.run("--no-wait", "exec", "true").returncode == 0
