"""Issue 16: a bounded soak. A few minutes of mixed load and faults against one real daemon, then
the invariants: nothing leaked (descriptor, slot, child, zombie, process, temp file), every started
command has both audit records, every finished transfer is whole and no unfinished one visible.

The load: exec on both protocols (HLK2 fds and relay, HLNK), TCP with TLS, transfers (some killed
mid-stream), detached jobs (some cancelled), clients killed mid-stream, timeouts, and an attacker
as uid 65534 with wrong tokens, garbage and idle floods. The faults: SIGHUP reloads, and a daemon
restart part-way. HOSTLINK_SOAK_S sets the length (default 120 s).
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

from hostlink.daemon import tls
from tests.conftest import wait_for
from tests.daemon.test_availability import NOBODY, PRELUDE, baseline, settled, status
from tests.daemon.test_hlnk_requests import Hlnk
from tests.daemon.test_remote import free_port
from tests.daemon.test_transfer import make_tree, snapshot

SECONDS = float(os.environ.get("HOSTLINK_SOAK_S", "120"))
SPARSE = 4 << 30  # a long transfer to kill part-way (reading it is fast: no disk)
MARK = "soak%s" % os.urandom(4).hex()  # in every command line, to find what outlived its request

ATTACKER = """
deadline = time.monotonic() + float(sys.argv[1])
def quietly(fn):
    try:
        fn()
    except OSError:
        time.sleep(0.05)
def flood():
    held = [conn() for _ in range(8)]
    time.sleep(0.5)
    for s in held:
        s.close()
def wrong_token():
    s = conn(); s.settimeout(5)
    s.sendall(p.PREFACE + p.encode(p.Auth("wrong-token-0123456789", "soak")))
    s.recv(100); s.close()
def garbage():
    s = conn(); s.sendall(os.urandom(300)); s.close()
def hlnk_wrong():
    body = json.dumps({"version": 1, "type": "exec", "id": "x", "token": "wrong-0123456789abcdef",
                       "command": "id"}).encode()
    s = conn(); s.settimeout(5)
    s.sendall(b"HLNK" + len(body).to_bytes(4, "big") + body); s.recv(100); s.close()
def half():
    s = conn(); s.sendall(p.PREFACE + p.encode(p.Auth(TOKEN, "soak"))[:5]); time.sleep(0.2); s.close()
while time.monotonic() < deadline:
    for fn in (flood, wrong_token, garbage, hlnk_wrong, half):
        quietly(fn)
"""


class Soak:
    def __init__(self, d, tmp):
        self.d = d
        self.tmp = tmp
        self.deadline = time.monotonic() + SECONDS
        self.faults = []  # (start, end) of each restart: a request overlapping one may fail
        self.failures = []
        self.counts = {}
        self.lock = threading.Lock()
        self.tls = ("-a", "127.0.0.1:%d" % d.port, "--fingerprint", d.fingerprint)

    # ---- bookkeeping ---------------------------------------------------------------------------

    def result(self, what, began, ok, detail=""):
        ended = time.monotonic()
        with self.lock:
            if ok:
                self.counts[what] = self.counts.get(what, 0) + 1
            elif not any(s <= ended and began <= e for s, e in self.faults):
                self.failures.append("%s: %s" % (what, detail))

    def run(self, what, *args, expect=0, out=None, **kw):
        began = time.monotonic()
        try:
            r = self.d.run(*args, timeout=60, **kw)
        except subprocess.TimeoutExpired:
            self.result(what, began, False, "no answer within 60 s: %r" % (args,))
            return None
        ok = r.returncode == expect and (out is None or r.stdout == out)
        self.result(what, began, ok, "exit %d, %r %r for %r" % (r.returncode, r.stdout[-200:],
                                                                r.stderr[-300:], args))
        return r if ok else None

    def loop(self, fn):
        n = 0
        while time.monotonic() < self.deadline:
            fn(n)
            n += 1

    # ---- load ----------------------------------------------------------------------------------

    def exec_hlk2(self, n):
        flags = random.choice([(), ("--relay",), ("--argv",)])
        if flags == ("--argv",):
            self.run("exec --argv", "exec", "--argv", "/bin/echo", MARK, str(n),
                     out=("%s %d\n" % (MARK, n)).encode())
            return
        self.run("exec " + " ".join(flags), "exec", *flags,
                 "echo %s-%d; echo to-stderr >&2" % (MARK, n), out=("%s-%d\n" % (MARK, n)).encode())

    def exec_hlnk(self, n):
        began = time.monotonic()
        big = n % 10 == 0  # past the in-memory cap: truncated, flagged
        command = "head -c 6000000 /dev/zero | tr '\\0' a # %s" % MARK if big else \
            "echo %s-%d" % (MARK, n)
        try:
            c = Hlnk(self.d.socket)
            c.send({"version": 1, "type": "exec", "id": "s%d" % n, "token": self.d.token,
                    "command": command})
            r = c.answer()
            c.s.close()
        except OSError as exc:
            self.result("hlnk exec", began, False, str(exc))
            return
        if big:
            ok = r and r["status"] == "ok" and r["stdout_truncated"] and \
                r["stdout_original_bytes"] == 6000000 and len(r["stdout"]) < 6000000
        else:
            ok = r and r["status"] == "ok" and r["stdout"] == "%s-%d\n" % (MARK, n)
        self.result("hlnk exec", began, ok, repr(r)[:300])

    def exec_tls(self, n):
        self.run("tls exec", *self.tls, "exec", "echo %s-tls-%d" % (MARK, n),
                 out=("%s-tls-%d\n" % (MARK, n)).encode())

    def transfers(self, n):
        dest = self.tmp / "xfer" / str(n)
        if n % 4 == 3:  # killed mid-stream: nothing of it may stay visible
            dest.mkdir(parents=True)
            began = time.monotonic()
            proc = self.d.popen("put", str(self.tmp / "sparse.bin"), str(dest),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for(lambda: os.listdir(dest) or proc.poll() is not None, 20, "the put to start")
            except AssertionError as exc:
                self.result("put killed", began, False, str(exc))
            if proc.poll() is not None:
                self.result("put killed", began, False, "ended first: exit %d %r" % (
                    proc.returncode, proc.stderr.read()[-300:]))
            time.sleep(random.uniform(0, 0.3))
            proc.kill()
            proc.wait()
            self.killed_puts.append(dest)
            return
        if self.run("put", "put", str(self.src), str(dest)) is not None:
            began = time.monotonic()
            self.result("put whole", began, snapshot(dest) == self.src_snapshot, "differs: %s" % dest)
        back = self.tmp / "back" / str(n)
        if self.run("get", "get", str(dest), str(back)) is not None:
            self.result("get whole", time.monotonic(), snapshot(back) == self.src_snapshot,
                        "differs: %s" % back)

    def jobs(self, n):
        if n % 4 == 3:
            r = self.run("job start", "exec", "-D", "sleep 60 # %s" % MARK)
            if r is not None:
                self.run("job cancel", "job", "cancel", "--kill", r.stdout.decode().strip())
            return
        r = self.run("job start", "exec", "-D", "echo %s-job-%d; sleep 0.3" % (MARK, n))
        if r is not None:
            ident = r.stdout.decode().strip()
            if self.run("job wait", "-x", "job", "wait", ident) is not None:
                self.run("job tail", "job", "tail", ident, out=("%s-job-%d\n" % (MARK, n)).encode())

    def killed(self, n):
        kind = n % 3
        if kind == 2:  # a timeout: the command and what it left in its own session go
            self.run("timeout", "-T", "300", "exec", "setsid sleep 30 & sleep 30 # %s" % MARK, expect=5)
            return
        command = ["yes %s | head -c 200000000" % MARK, "sleep 30 # %s" % MARK][kind]
        proc = self.d.popen("exec", command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0.05, 0.5))
        proc.kill()
        proc.wait()

    # ---- faults --------------------------------------------------------------------------------

    def faults_loop(self):
        restarted = False
        last_hup = time.monotonic()
        while time.monotonic() < self.deadline:
            time.sleep(0.5)
            now = time.monotonic()
            if not restarted and now > self.deadline - SECONDS * 0.55:
                began = time.monotonic()
                self.faults.append((began, began + 3600))
                self.d.stop()
                self.d.start()
                self.faults[-1] = (began, time.monotonic() + 1)
                restarted = True
            elif now - last_hup > 10:
                self.d.signal(signal.SIGHUP)
                last_hup = now


def _leftovers(mark):
    """Processes (not zombies reaped later) whose command line holds ``mark``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if mark.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_soak(make_daemon, tmp_path):
    port = free_port()
    d = make_daemon("socket_mode = 0666\ntcp_enabled = yes\ntcp_bind = 127.0.0.1\ntcp_port = %d\n"
                    "tls = required\njob_spool_dir = %s\nmax_concurrent = 10\nmax_connections = 48\n"
                    "max_unauthenticated = 12\nmax_unauthenticated_per_peer = 6\n"
                    "auth_timeout_ms = 1500\nshutdown_grace_ms = 1000\nkill_grace_ms = 500\n"
                    % (port, tmp_path / "jobs"), public=True)
    os.chmod(os.path.dirname(d.socket), 0o755)
    d.port = port
    d.fingerprint = tls.fingerprint(str(d.base / "hostlink.crt"))
    base = baseline(d)
    soak = Soak(d, tmp_path)
    soak.src = make_tree(tmp_path / "src", big=2)
    soak.src_snapshot = snapshot(soak.src)
    soak.killed_puts = []
    (tmp_path / "xfer").mkdir()
    (tmp_path / "back").mkdir()
    with open(tmp_path / "sparse.bin", "wb") as f:
        f.truncate(SPARSE)  # sparse: a long transfer to kill part-way
    attacker = subprocess.Popen(
        ["/usr/bin/python3", "-c", PRELUDE + ATTACKER, str(SECONDS)], user=NOBODY, cwd="/",
        env={"SOCK": d.socket, "TOKEN": d.token, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers = [threading.Thread(target=soak.loop, args=(fn,)) for fn in (
        soak.exec_hlk2, soak.exec_hlk2, soak.exec_hlnk, soak.exec_tls, soak.transfers, soak.jobs,
        soak.killed)]
    for w in workers:
        w.start()
    soak.faults_loop()
    for w in workers:
        w.join(120)
    assert attacker.wait(60) == 0, attacker.stderr.read().decode()[-2000:]

    assert not soak.failures, "%d failed requests outside the restart: %s" % (
        len(soak.failures), "\n".join(soak.failures[:10]))
    for what in ("exec ", "exec --relay", "exec --argv", "hlnk exec", "tls exec", "put whole",
                 "get whole", "job tail", "job cancel", "timeout"):
        assert soak.counts.get(what, 0) >= 3, (what, soak.counts)

    # Nothing held: connections, commands, jobs, approvals, children (zombies included), and
    # no more descriptors than the first daemon had idle.
    settled(d, base)
    wait_for(lambda: not _leftovers(MARK), 20, "no process of the soak left")
    # No unfinished transfer visible, and no temp file of a finished one.
    for dest in soak.killed_puts:  # gone, or whole if it ended before its client was killed
        wait_for(lambda: os.listdir(dest) in ([], ["sparse.bin"]), 20, "the partial file removed")
        if os.listdir(dest):
            assert os.path.getsize(dest / "sparse.bin") == SPARSE
    for root in (tmp_path / "xfer", tmp_path / "back"):
        names = [n for _, dirs, files in os.walk(root) for n in dirs + files]
        assert not [n for n in names if n.startswith(".hostlink-partial")], names
    # Every job ended with an outcome of its own.
    for ident in os.listdir(tmp_path / "jobs"):
        state = json.loads((tmp_path / "jobs" / ident / "state.json").read_text())
        assert state["state"] in ("exited", "cancelled"), (ident, state)

    # The audit: every line whole, every started command and job with its end.
    records = [json.loads(line) for line in d.audit.read_text().splitlines()]
    starts = [r["request"] for r in records if r["event"].endswith("_start") and "request" in r]
    ends = {r.get("request") for r in records if not r["event"].endswith("_start")}
    assert starts and not [s for s in starts if s not in ends], \
        "commands without an end record: %r" % [s for s in starts if s not in ends][:10]
    jobs = {r["job"] for r in records if r["event"] == "job_start"}
    assert jobs and jobs <= {r["job"] for r in records if r["event"] == "job_end"}
    assert sum(r["event"] == "reload" for r in records) >= SECONDS // 20
    log = d.log.read_text()
    assert "Traceback" not in log and "bug:" not in log, log[-3000:]
    print("soak: %d s, %s, evicted %d" % (SECONDS, json.dumps(soak.counts, sort_keys=True),
                                          status(d)["connections"]["evicted_total"]))
