"""hostlink benchmarks, side by side with the local floor, docker exec and ssh.

    python3 bench/run.py [--quick] [--only A,B] [--against DIR]

Starts its own hostlinkd on a temporary socket, an agent container (uid 1000) with the socket
directory mounted, and an sshd on loopback, then measures each figure as a median over repeated
runs and writes a markdown table to bench/results/. ``--against DIR`` times another checkout of
hostlink (``git worktree add DIR REV``) beside this one in the same rounds: its own client
against its own daemon, for before/after figures of a change (latency, concurrency, client and
memory sections). Needs root and a Docker engine (scripts/test sets one up; the memory section needs
none); openssh-server is installed when missing. Numbers are printed, never asserted.
"""

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

TOKEN = "bench-token-0123456789"  # hostlinkd wants 16 characters or more

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hostlink import zipapp  # noqa: E402

GIB = 1 << 30
# What each optimization bought, measured on this machine when it was made (kept with the table).
OPTIMIZATIONS = """\
| optimization | before | after |
|---|---|---|
| client imported from the archive by `python3 -c` instead of running the archive (which goes through runpy: importlib.util, contextlib, collections) | `--version` 1.81x the bare interpreter | 1.36x |
| hand-written option parser instead of getopt (imports gettext and re) | getopt alone: 16.5 ms of imports | none |
| `_socket`, `_signal`, `struct` on the hot path instead of socket, signal, json | socket 15.2 ms, json 20.2 ms of imports | 0.3 ms |
| relay: one reused buffer per pipe (readv, recv_into), no task per chunk, 1 MiB pipes, 4 MiB socket buffer | 1 GiB relayed in 5.9 s (182 MB/s) | 0.85-1.0 s (1.0-1.26 GB/s) |
| commands off the hot path moved from cli.py to commands.py | cli bytecode 57 KB loaded by every exec | 27 KB |
| `posix` instead of `os` on the hot path (with -S, os is not preloaded: posixpath, _collections_abc) | os: 1.6 ms of imports | none |
| transfers: 1 MiB tar blocks instead of tarfile's 10 KiB records; SHA-256 only with --verify | 135 MB/s put of 256 MiB | 88-146 MB/s for 1 GiB |
| one file over the socket: its descriptor passed, copied in the kernel (copy_file_range/sendfile), no tar | 1 GiB put in 12.9 s, get in 10.8 s (host disk; cat copy 4.7 s) | put 5.4 s, get 3.1 s |
| the client ends with `posix._exit` once its output is flushed: no interpreter teardown | `exec true` 22.9-26.7 ms on the host, `--version` 1.13-1.42x the bare interpreter | 17.7-19.1 ms, 0.98-1.32x |
| no `struct` import on the exec path (descriptors packed with `_struct`; protocol imports `_struct`) | 0.25-0.4 ms of imports at every exec | none |
| daemon: Ok goes out with the answer when the request came with the token; deadlines by `asyncio.timeout` (no task each); the peer's cgroup read as raw bytes | exec from a warm client 4.10 ms, daemon CPU 1.76 ms a call (interleaved A/B) | 3.60 ms, 1.42 ms |
| relay pump: yields once after a short read instead of a 0.2 ms pause (epoll rounds it up to 1 ms) | 1 GiB relayed to /dev/null 770-850 MB/s | 1050-1380 MB/s |
| relay: data events are views of the received bytes when a frame lies whole in one read | client CPU 0.28-0.37 s per GiB relayed | 0.28-0.33 s |
| job runners start with `python3 -S` (no site: its .pth files cost more than the runner) and `ctypes` only where the daemon needs it | 100 `exec -D` at once 7.2 s | 5.4 s |
| the client grows a pipe it relays into to 1 MiB (a frame is one write, not 16 turns of a 64 KiB pipe) | 1 GiB relayed into `cat`: 913-1068 MB/s, median 976 | 965-1190, median 1041 |
| `-j` writes its JSON with json's C string escaper, not the json module (whose decoder imports re and enum) | `-j exec true` 33.5 ms (exec 19.0) | 21.6 ms |
| transfers: the host helper starts with `python3 -S`; tarfile, fnmatch and hashlib are imported only where a tar stream, an --exclude or a hash needs them | put of a small file 80 ms, get 113 ms (client side alone) | 60 ms, 103 ms (and 30 ms less on the host) |
| `-j`, `-m`, `-O` over the socket: pipes of the client's own are the command's stdout and stderr (fds mode), not relayed by the daemon | `-j exec true` 21.6-22.3 ms (exec 19.0-19.9) | 19.9-20.7 ms (exec 19.5-19.9) |
| tried and dropped: splice from the command's pipe to the socket (Linux 6.5+ moves pages) | daemon 0.39-0.47 s CPU per GiB, the command 0.45, client and cat 0.7-0.95 | 0.27-0.44, 0.6, 1.0-1.3 (pages given away must be allocated anew) |
| tried and dropped: uvloop | - | refuses a SIGCHLD handler, which the subreaper needs |
"""
SYSTEM_PY = "/usr/bin/python3"
# The load generator of the concurrency section, run by python3 in the container: N calls
# opened at once by one process speaking the protocol (hostlink.protocol) with its descriptors
# passed, as the client does; a call's latency runs from the start of the burst to its Exit.
LOAD = """\
import array, json, selectors, socket, sys, time
sys.path.insert(0, "/bench/hostlink")
from hostlink.wire import protocol as p
PATH, N = %r, %d
TOKEN = "bench-token-0123456789"
FDS = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]).tobytes())]

def start(sel, i):
    conn = p.Connection(p.CLIENT)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(PATH)
    s.sendmsg([conn.send(p.Auth(TOKEN, "bench")) + conn.send(p.Exec(command="true", mode="fds"))],
              FDS)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, (i, conn))

def finish(sel, key, out):
    i, conn = key.data
    data = key.fileobj.recv(65536)
    conn.receive_data(data)
    while True:
        ev = conn.next_event()
        if ev is p.NEED_DATA and data:
            return False
        if isinstance(ev, (p.Exit, p.Error)) or ev is None or ev is p.NEED_DATA:
            out[i] = "busy" if isinstance(ev, p.Error) and ev.code == "busy" else (
                "ok" if isinstance(ev, p.Exit) else "error: %%r" %% (ev,))
            sel.unregister(key.fileobj)
            key.fileobj.close()
            return True

def burst(n):
    sel, out, lat = selectors.DefaultSelector(), {}, {}
    t0 = time.perf_counter()
    for i in range(n):
        start(sel, i)
    left = n
    while left:
        for key, _ in sel.select():
            if finish(sel, key, out):
                lat[key.data[0]] = (time.perf_counter() - t0) * 1000
                left -= 1
    return (time.perf_counter() - t0) * 1000, sorted(lat.values()), out

single = sorted(burst(1)[0] for _ in range(9))[4]
total, lat, out = burst(N)
res = list(out.values())
print(json.dumps({"total_ms": total, "latency_ms": lat, "busy": res.count("busy"),
                  "errors": [r for r in res if r not in ("ok", "busy")], "single_ms": single}))
"""
SECTIONS = ("latency", "throughput", "concurrency", "tcp", "files", "client_start", "memory")
NO_DOCKER = ("memory",)  # sections that need no container
# What max_concurrent commands at once write to stdout and to stderr each, for the memory section:
# text, and the worst for an HLNK result held in memory: NUL bytes (6 JSON characters each,
# "\u0000") after one 4-byte UTF-8 character, which makes the decoded text and its JSON 4 bytes
# a character (as in binary output: random bytes hold such characters every few KB).
OUTPUTS = {"text": "head -c %d /dev/zero | tr '\\0' a",
           "binary": "{ printf '\\360\\237\\230\\200'; head -c %d /dev/zero; }"}


def median_ms(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


class Bench:
    def __init__(self, quick, against=None):
        self.quick = quick
        self.rows = []
        self.tmp = tempfile.mkdtemp(prefix="hlbench-")
        os.chmod(self.tmp, 0o755)
        self.app = zipapp.build(os.path.join(self.tmp, "hostlink"))
        self.daemons = []
        self.against = None
        if against:
            # Its own builder: the other checkout decides what its client file holds.
            os.makedirs(os.path.join(self.tmp, "against"))
            subprocess.run([sys.executable, "-m", "hostlink.zipapp",
                            os.path.join(self.tmp, "against", "hostlink")], cwd=against, check=True,
                           stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=against))
            self.against = against
            self.against_label = subprocess.run(
                ["git", "-C", against, "log", "-1", "--format=%h"], capture_output=True,
                text=True).stdout.strip() or os.path.basename(against.rstrip("/"))

    # ---- setup ---------------------------------------------------------------------------------

    def daemon(self, name, max_concurrent=16, tcp_port=0, src=ROOT):
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        conf = os.path.join(d, "hostlink.conf")
        with open(conf, "w") as f:
            f.write("auth_token = %s\nshell = /bin/bash\nsocket = %s/run/hostlink.sock\n"
                    "socket_mode = 0666\nmax_concurrent = %d\nmax_unauthenticated = 1024\n"
                    "audit_log = %s/audit.log\nlog_level = warning\n" % (TOKEN, d, max_concurrent, d))
            if tcp_port:
                f.write("tcp_enabled = yes\ntcp_bind = 127.0.0.1\ntcp_port = %d\ntls = required\n"
                        % tcp_port)
        os.chmod(conf, 0o600)
        proc = subprocess.Popen([sys.executable, "-m", "hostlink.daemon", "-c", conf], cwd=src,
                                env=dict(os.environ, PYTHONPATH=src))
        sock = os.path.join(d, "run", "hostlink.sock")
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        os.chmod(os.path.dirname(sock), 0o755)
        self.daemons.append(proc)
        return proc, sock

    def container(self):
        import docker
        from hostlink.install import images
        client = docker.from_env()
        tag = images.build(client, tag="bench", names=("agent",))["agent"]
        self.docker = client
        self.ctr = client.containers.run(
            tag, "sleep infinity", detach=True, remove=True, user="1000",
            labels={"hostlink.bench": "1"},
            volumes={os.path.dirname(self.sock): {"bind": "/run/hostlink", "mode": "rw"},
                     self.tmp: {"bind": "/bench", "mode": "ro"}},
            environment={"HOSTLINK_TOKEN": TOKEN})
        return self.ctr

    def in_container(self, script):
        """Run a python3 script in the container; returns its stdout."""
        code, out = self.ctr.exec_run(["python3", "-c", script])
        if code != 0:
            raise RuntimeError(out.decode())
        return out.decode()

    def sshd(self):
        if not shutil.which("sshd") and not os.path.exists("/usr/sbin/sshd"):
            subprocess.run(["apt-get", "install", "-y", "-qq", "openssh-server", "openssh-client"],
                           check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        d = os.path.join(self.tmp, "ssh")
        os.makedirs(d)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/host"])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/user"])
        os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
        self.auth_keys = "/root/.ssh/authorized_keys"
        self.auth_backup = open(self.auth_keys).read() if os.path.exists(self.auth_keys) else None
        with open(self.auth_keys, "a") as f:
            f.write(open(d + "/user.pub").read())
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd_proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-p", "2222", "-h", d + "/host", "-o", "ListenAddress=127.0.0.1",
             "-o", "PermitRootLogin=prohibit-password", "-o", "PidFile=" + d + "/pid"])
        time.sleep(0.5)
        self.ssh = ["ssh", "-p", "2222", "-i", d + "/user", "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1"]
        self.ssh_mux = self.ssh[:1] + ["-o", "ControlMaster=auto", "-o", "ControlPath=%s/mux" % d,
                                       "-o", "ControlPersist=60"] + self.ssh[1:]

    def row(self, section, what, value, unit, anchor=None, note=""):
        ratio = "%.2fx" % (value / anchor) if anchor else ""
        self.rows.append((section, what, "%.1f %s" % (value, unit), ratio, note))
        print("%-12s %-58s %12s %8s %s" % (section, what, "%.1f %s" % (value, unit), ratio, note),
              flush=True)

    # ---- measurements --------------------------------------------------------------------------

    def latency(self):
        n = 15 if self.quick else 100
        # The commands run in turn, round after round, and the host's bash -c true in between
        # blocks of rounds, so that a slow spell of this shared VM lands on all of them alike;
        # each figure is the median of all its runs.
        loop = ("import subprocess,time,os,json\n"
                "os.environ['HOSTLINK_SOCKET']='/run/hostlink/hostlink.sock'\n"
                "cmds=json.loads(%r)\nt={k:[] for k in cmds}\n"
                "for _ in range(%d):\n"
                " for k,c in cmds.items():\n"
                "  s=time.perf_counter(); subprocess.run(c,stdout=subprocess.DEVNULL); "
                "t[k].append((time.perf_counter()-s)*1000)\n"
                "print(json.dumps(t))\n")
        cmds = {"py": ["python3", "-I", "-S", "-c", "pass"],
                "hl": ["/bench/hostlink", "exec", "true"],
                "relay": ["/bench/hostlink", "--relay", "exec", "true"],
                "json": ["/bench/hostlink", "-j", "exec", "true"]}
        if self.against:
            self.daemon("against-d", src=self.against)
            old = ["/bench/against/hostlink", "-s", "/bench/against-d/run/hostlink.sock"]
            cmds.update(old_hl=old + ["exec", "true"], old_json=old + ["-j", "exec", "true"])
        runs = {k: [] for k in cmds}
        runs["bash"] = []
        blocks = 5
        for _ in range(blocks):
            for k, v in json.loads(self.in_container(loop % (json.dumps(cmds), n // blocks))).items():
                runs[k] += v
            for _ in range(n // blocks):
                t = time.perf_counter()
                run(["bash", "-c", "true"])
                runs["bash"].append((time.perf_counter() - t) * 1000)
        got = {k: statistics.median(v) for k, v in runs.items()}
        floor_bash = got["bash"]
        floor = got["py"] + floor_bash
        hl = self.single_ms = got["hl"]
        dexec = median_ms(lambda: run(["docker", "exec", self.ctr.id, "true"]), n)
        self.row("latency", "floor: python3 -I -S -c pass (container) + bash -c true (host)", floor,
                 "ms", None, "%.1f + %.1f ms" % (got["py"], floor_bash))
        self.row("latency", "hostlink exec true (container -> host, fds path)", hl, "ms", floor,
                 "goal <= 1.3x floor")
        self.row("latency", "hostlink --relay exec true", got["relay"], "ms", floor)
        self.row("latency", "hostlink -j exec true (what agents call)", got["json"], "ms", floor)
        if self.against:
            self.row("latency", "hostlink exec true, %s (client and daemon)" % self.against_label,
                     got["old_hl"], "ms", floor, "this checkout: %.2fx of it" % (hl / got["old_hl"]))
            self.row("latency", "hostlink -j exec true, %s" % self.against_label, got["old_json"],
                     "ms", floor, "this checkout: %.2fx of it" % (got["json"] / got["old_json"]))
        self.row("latency", "docker exec CONTAINER true (from host)", dexec, "ms", floor,
                 "hostlink is %.1fx faster (goal >= 3x)" % (dexec / hl))
        try:
            self.sshd()
            ssh = median_ms(lambda: run(self.ssh + ["true"]), max(5, n // 4))
            run(self.ssh_mux + ["true"])
            mux = median_ms(lambda: run(self.ssh_mux + ["true"]), n)
            self.row("latency", "ssh to loopback sshd, true", ssh, "ms", floor)
            self.row("latency", "ssh with connection sharing, true", mux, "ms", floor)
        except (OSError, subprocess.CalledProcessError) as exc:
            print("ssh skipped: %s" % exc)
            self.ssh = None

    def throughput(self):
        n = 3 if self.quick else 5
        size = GIB // 4 if self.quick else GIB
        label = "%d MiB" % (size >> 20)
        # In turn, round after round (as the latency section), so a fast or slow spell of this VM
        # does not fall on one of them only.
        gen = "head -c %d /dev/zero" % size
        cmds = {"local": "%s | cat > /dev/null" % gen,
                "fds": "/bench/hostlink exec '%s' | cat > /dev/null" % gen,
                "relay": "/bench/hostlink --relay exec '%s' | cat > /dev/null" % gen}
        got = json.loads(self.in_container(
            "import subprocess,time,statistics,os,json\n"
            "os.environ['HOSTLINK_SOCKET']='/run/hostlink/hostlink.sock'\n"
            "cmds=json.loads(%r)\nt={k:[] for k in cmds}\n"
            "for _ in range(%d):\n"
            " for k,c in cmds.items():\n"
            "  s=time.perf_counter(); subprocess.run(c,shell=True,check=True); "
            "t[k].append(time.perf_counter()-s)\n"
            "print(json.dumps({k:statistics.median(v) for k,v in t.items()}))\n"
            % (json.dumps(cmds), n)))
        local, fds, relay = got["local"], got["fds"], got["relay"]
        dexec = statistics.median(self._time(lambda: subprocess.run(
            "docker exec %s %s > /dev/null" % (self.ctr.id, gen), shell=True, check=True), n))
        mb = size / 1e6
        self.row("throughput", "%s through a local pipe in the container" % label, mb / local, "MB/s")
        self.row("throughput", "%s hostlink, descriptor passing" % label, mb / fds, "MB/s", mb / local,
                 "goal >= 0.8x local pipe")
        self.row("throughput", "%s hostlink --relay (framed)" % label, mb / relay, "MB/s", mb / local,
                 "goal >= 1000 MB/s")
        self.row("throughput", "%s docker exec" % label, mb / dexec, "MB/s", mb / local)
        if self.ssh:
            s = statistics.median(self._time(lambda: subprocess.run(
                self.ssh_mux + [gen], stdout=subprocess.DEVNULL, check=True), n))
            self.row("throughput", "%s ssh (shared connection)" % label, mb / s, "MB/s", mb / local)

    @staticmethod
    def _time(fn, n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    def concurrency(self):
        """200 calls at once from inside the container, with the default limit and one above 200.

        The calls come from one light process (LOAD): 200 client processes would measure 200
        Python start-ups on this machine's two cores (about 2 s of CPU), not the daemon. The
        processes are measured too, for scale."""
        single = getattr(self, "single_ms", None) or self._single()
        # The floor: the same 200 commands started at once by one process on the host, no hostlink.
        t = time.perf_counter()
        procs = [subprocess.Popen(["bash", "-c", "true"], start_new_session=True) for _ in range(200)]
        for proc in procs:
            proc.wait()
        floor = (time.perf_counter() - t) * 1000
        self.row("concurrency", "floor: 200 x bash -c true started at once on the host", floor, "ms")
        for limit, label in ((16, "default max_concurrent 16"), (256, "max_concurrent 256")):
            self._burst(limit, label, single, floor)
            if self.against:  # the other checkout's client and daemon, the same way
                self._burst(limit, "%s, %s" % (label, self.against_label), single, floor,
                            self.against, os.path.join(self.tmp, "against", "hostlink"))

    def _burst(self, limit, label, single, floor, src=ROOT, app=None):
        name = "conc%d%s" % (limit, "-against" if src != ROOT else "")
        proc, sock = self.daemon(name, limit, src=src)
        idle = _rss(proc.pid)
        res = json.loads(self.in_container(LOAD % ("/bench/%s/run/hostlink.sock" % name, 200)))
        lat = res["latency_ms"]
        self.row("concurrency", "200 x exec true at once, %s: total" % label, res["total_ms"], "ms",
                 floor)
        self.row("concurrency", "  p50 latency", lat[100], "ms")
        self.row("concurrency", "  p99 latency", lat[197], "ms", single,
                 "goal < 10x a single hostlink exec true (%.1f ms); %.2fx the floor"
                 % (single, lat[197] / floor))
        self.row("concurrency", "  a single call the same way, alone", res["single_ms"], "ms")
        self.row("concurrency", "  server busy / other errors", res["busy"], "calls", None,
                 "errors: %d %s" % (len(res["errors"]), "; ".join(res["errors"][:2])))
        env = dict(os.environ, HOSTLINK_SOCKET=sock, HOSTLINK_TOKEN=TOKEN)
        start = time.perf_counter()
        procs = [subprocess.Popen([app or self.app, "exec", "true"], env=env, stderr=subprocess.PIPE)
                 for _ in range(200)]
        codes = [p.wait() for p in procs]
        self.row("concurrency", "  200 hostlink processes at once (host): all done",
                 (time.perf_counter() - start) * 1000, "ms", None,
                 "busy %d, errors %d" % (codes.count(4), sum(c not in (0, 4) for c in codes)))
        peak = _hwm(proc.pid)
        self.row("memory", "daemon RSS idle (%s)" % label, idle / 1024, "MB", None, "goal < 30 MB")
        self.row("memory", "daemon peak RSS under 200 calls", peak / 1024, "MB")
        proc.terminate()
        proc.wait()

    def _single(self):
        got = self.in_container(
            "import subprocess,time,statistics\nt=[]\nfor _ in range(20):\n"
            " s=time.perf_counter(); subprocess.run(['/bench/hostlink','exec','true'],env="
            "{'HOSTLINK_SOCKET':'/run/hostlink/hostlink.sock','HOSTLINK_TOKEN':'bench-token-0123456789'}); "
            "t.append((time.perf_counter()-s)*1000)\nprint(statistics.median(t))\n")
        return float(got)

    def tcp(self):
        """Relayed latency and throughput over TCP with TLS on loopback (from the host)."""
        from hostlink.daemon import tls
        port = 19000 + os.getpid() % 1000
        proc, _ = self.daemon("tcp", tcp_port=port)
        for _ in range(100):
            if os.path.exists(os.path.join(self.tmp, "tcp", "hostlink.crt")):
                break
            time.sleep(0.05)
        fp = tls.fingerprint(os.path.join(self.tmp, "tcp", "hostlink.crt"))
        env = dict(os.environ, HOSTLINK_TOKEN=TOKEN, HOSTLINK_PYTHON=SYSTEM_PY)
        base = [self.app, "-a", "127.0.0.1:%d" % port, "--fingerprint", fp]
        n = 15 if self.quick else 40
        lat = median_ms(lambda: run(base + ["exec", "true"], env=env), n)
        self.row("tcp", "hostlink over TCP+TLS (loopback), exec true", lat, "ms")
        size = GIB // 4 if self.quick else GIB
        t = statistics.median(self._time(lambda: subprocess.run(
            base + ["exec", "head -c %d /dev/zero" % size], env=env, stdout=subprocess.DEVNULL,
            check=True), 3))
        self.row("tcp", "%d MiB over TCP+TLS (relayed)" % (size >> 20), size / 1e6 / t, "MB/s")

    def files(self):
        """A file each way over the socket, against cat of the same file in the container; jobs."""
        size = GIB // 4 if self.quick else GIB
        label = "%d MiB file" % (size >> 20)
        host_dir = os.path.join(self.tmp, "files")
        os.makedirs(host_dir)
        host_file = os.path.join(host_dir, "src.bin")
        run(["sh", "-c", "head -c %d /dev/zero > %s" % (size, host_file)])
        t = ("import subprocess,time,os\nos.environ['HOSTLINK_SOCKET']='/run/hostlink/hostlink.sock'\n"
             "subprocess.run('head -c %d /dev/zero > /tmp/big', shell=True, check=True)\n"
             "def m(c):\n s=time.perf_counter(); subprocess.run(c, shell=True, check=True); "
             "return time.perf_counter()-s\n" % size)
        res = self.in_container(
            t + "cat_t=min(m('cat /tmp/big > /tmp/copy; rm /tmp/copy') for _ in range(3))\n"
            "put_t=min(m('/bench/hostlink put /tmp/big %s/put.bin 2>/dev/null') for _ in range(2))\n"
            "get_t=min(m('rm -f /tmp/got; /bench/hostlink get %s /tmp/got 2>/dev/null') for _ in range(2))\n"
            "print(cat_t, put_t, get_t)" % (host_dir, host_file))
        cat_t, put_t, get_t = map(float, res.split())
        mb = size / 1e6
        self.row("files", "%s: cat FILE > COPY in the container" % label, mb / cat_t, "MB/s")
        self.row("files", "%s: hostlink put, container -> host" % label, mb / put_t, "MB/s",
                 mb / cat_t, "goal >= 0.8x cat")
        self.row("files", "%s: hostlink get, host -> container" % label, mb / get_t, "MB/s",
                 mb / cat_t, "goal >= 0.8x cat")
        proc, sock = self.daemon("jobs", 16)
        with open(os.path.join(self.tmp, "jobs", "hostlink.conf"), "a") as f:
            f.write("job_spool_dir = %s/jobs/spool\n" % self.tmp)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        env = dict(os.environ, HOSTLINK_SOCKET=sock, HOSTLINK_TOKEN=TOKEN)
        start = time.perf_counter()
        procs = [subprocess.Popen([self.app, "exec", "-D", "sleep 1"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) for _ in range(100)]
        ids = [p.communicate()[0].strip() for p in procs]
        total = (time.perf_counter() - start) * 1000
        self.row("jobs", "100 x exec -D at once: all ids back", total, "ms", None,
                 "%d ids" % sum(1 for i in ids if len(i) == 12))

    def client_start(self):
        n = 20 if self.quick else 50
        for py in (SYSTEM_PY, shutil.which("python3")):
            if not py or not os.path.exists(py):
                continue
            env = dict(os.environ, HOSTLINK_PYTHON=py)
            bare = median_ms(lambda: run([py, "-I", "-S", "-c", "pass"]), n)
            self.row("client", "bare interpreter %s -I -S -c pass" % py, bare, "ms")
            v = median_ms(lambda: run([self.app, "--version"], env=env), n)
            self.row("client", "hostlink --version (%s)" % py, v, "ms", bare, "goal <= 1.5x")
            if self.against:
                old = os.path.join(self.tmp, "against", "hostlink")
                o = median_ms(lambda: run([old, "--version"], env=env), n)
                self.row("client", "hostlink --version, %s (%s)" % (self.against_label, py), o,
                         "ms", bare, "this checkout: %.2fx of it" % (v / o))
            h = median_ms(lambda: run([self.app, "--help"], env=env), n)
            self.row("client", "hostlink --help (%s)" % py, h, "ms", bare)

    def memory(self):
        """The daemon's peak RSS (VmHWM) under max_concurrent (16) HLNK execs at once, each writing
        far more than the cap to stdout and to stderr: an HLNK result is held in memory and
        answered as one JSON frame, so this is its worst case. HLK2's relay, which streams, beside
        it; with --against, the other checkout's daemon the same way. A daemon each, fresh: VmHWM
        is the peak of a process's whole life."""
        n, size, mib = 16, 100_000_000, 1 << 20
        cap = 4 * mib  # hlnk_exec.MEMORY_CAP: kept per stream when the conf names no cap
        goals = {}
        # (bytes of JSON a byte of output, bytes a character of its str): text 1 and 1; binary 6
        # ("\u0000") and 4 (one 4-byte character makes the whole str 4 bytes a character).
        for kind, (js, wide) in (("text", (1, 1)), ("binary", (6, 4))):
            # Every answer held until its client took it, with the output kept (x js + 1); one
            # answer encoded at a time (one thread): its text, its JSON chunks and their join.
            held, encoding = 2 * cap * (js + 1), 2 * cap * (wide + 2 * js * wide)
            goals[kind] = ("goal: bounded, <= %.0f MiB = %d x 2 x 4 MiB x %d (answers held, "
                           "output kept) + 2 x 4 MiB x %d (one answer being encoded)"
                           % ((n * held + encoding) / mib, n, js + 1, wide + 2 * js * wide))
        what = "%s, stdout and stderr 2 x %d MB each" % ("%s", size // 10**6)
        idle = None
        for kind in ("text", "binary"):
            proc, sock = self.daemon("mem-" + kind, n)
            if idle is None:
                idle = _rss(proc.pid)
                self.row("memory", "daemon RSS idle (max_concurrent %d)" % n, idle / 1024, "MB")
            peak, note = _peak(proc, lambda: _hlnk_burst(sock, _both(OUTPUTS[kind] % size), n))
            self.row("memory", "peak RSS, %d x HLNK exec at once, %s" % (n, what % kind),
                     peak / 1024, "MB", idle / 1024, "%s; %s" % (note, goals[kind]))
        proc, sock = self.daemon("mem-relay", n)
        peak, note = _peak(proc, lambda: _relay_burst(sock, _both(OUTPUTS["binary"] % size), n))
        self.row("memory", "peak RSS, %d x HLK2 --relay exec at once, %s" % (n, what % "binary"),
                 peak / 1024, "MB", idle / 1024, note + "; streamed, no cap")
        if not self.against:
            return
        # The first daemon kept 64 MiB a stream. Binary once only: one such answer took it to
        # 6.8 GB (its 768 MiB of JSON built as str at 4 bytes a character), 16 would not fit.
        for kind, count in (("text", n), ("binary", 1)):
            proc, sock = self.daemon("mem-against-" + kind, n, src=self.against)
            old_idle = _rss(proc.pid)
            peak, note = _peak(proc, lambda: _hlnk_burst(sock, _both(OUTPUTS[kind] % size), count))
            self.row("memory", "peak RSS, %s, %s, %s"
                     % ("%d x HLNK exec at once" % count if count > 1 else "one HLNK exec",
                        what % kind, self.against_label), peak / 1024, "MB", old_idle / 1024,
                     note + "; its cap: 64 MiB a stream" + ("" if count == n else
                     "; once, not %d times: 16 would not fit in %d GiB" % (n, _mem_total() >> 20)))

    def close(self):
        for p in self.daemons:
            p.send_signal(signal.SIGTERM)
            p.wait()
        if getattr(self, "ctr", None):
            self.ctr.remove(force=True)
        if getattr(self, "sshd_proc", None):
            self.sshd_proc.terminate()
            self.sshd_proc.wait()
            if self.auth_backup is None:
                os.unlink(self.auth_keys)
            else:
                with open(self.auth_keys, "w") as f:
                    f.write(self.auth_backup)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self):
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        # A partial or quick run says so in its name: only full runs are tables to keep.
        kind = "-quick" if self.quick else ""
        kind += "" if self.full else "-partial"
        path = os.path.join(ROOT, "bench", "results",
                            "%s%s.md" % (time.strftime("%Y-%m-%d-%H%M%S"), kind))
        with open(path, "w") as f:
            f.write("# hostlink benchmark, %s\n\n%s, %d cores, Python %s\n\n"
                    % (time.strftime("%Y-%m-%d %H:%M"), platform.platform(), os.cpu_count(),
                       platform.python_version()))
            f.write("| section | what | median | ratio to anchor | note |\n|---|---|---|---|---|\n")
            for r in self.rows:
                f.write("| %s |\n" % " | ".join(str(c) for c in r))
            f.write("\nAnchors given with the issue (measured here before): docker exec about 61 ms; ssh to "
                    "loopback about 300 ms, 93 ms shared; python3 -I -S -c pass about 8 ms; 1 GiB through a "
                    "local pipe about 0.24 s, docker exec about 2.5 s, ssh about 2.9 s. This machine is a "
                    "shared 2-core VM: figures move by 20-50% between runs.\n\n" + OPTIMIZATIONS)
        print("\nwrote", path)


def _both(gen):
    """A command writing what ``gen`` writes to stdout, then the same to stderr."""
    return "%s; %s >&2" % (gen, gen)


def _peak(proc, burst):
    """The daemon's VmHWM (kB) after ``burst()``, and a note: what came back, in how long. The
    daemon is stopped then: what it may still hold is not left to the sections after."""
    t = time.perf_counter()
    note = burst()
    took = time.perf_counter() - t
    peak = _hwm(proc.pid)
    proc.terminate()
    proc.wait()
    return peak, "%s, %.1f s" % (note, took)


def _hlnk_burst(path, command, n):
    """``n`` HLNK exec requests at once, a connection each, read by this one process; each answer
    is checked for its status and truncation flags (from its last bytes: the answer of a daemon
    without a cap may be over a GB of JSON, never held here whole)."""
    from hostlink.wire import hlnk
    sel = selectors.DefaultSelector()
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(hlnk.encode({"version": 1, "type": "exec", "id": "mem%d" % i, "token": TOKEN,
                               "command": command, "timeout_ms": 120000}))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, {"got": 0, "head": b"", "tail": b""})
    answers = []
    while len(answers) < n:
        for key, _ in sel.select():
            st, data = key.data, key.fileobj.recv(1 << 20)
            st["got"] += len(data)
            st["head"] = (st["head"] + data[:256])[:256]
            st["tail"] = (st["tail"][-4096:] + data[-4096:])[-4096:]
            whole = (len(st["head"]) >= 8
                     and st["got"] >= 8 + struct.unpack(">I", st["head"][4:8])[0])
            if whole or not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                answers.append(_hlnk_answer(st, whole))
    ok = [a for a in answers if a.get("status") == "ok"]
    flagged = [a for a in ok if a.get("stdout_truncated") and a.get("stderr_truncated")]
    kept = max((a["size"] for a in answers), default=0)
    note = "%d/%d ok, %d truncated with both flags, answers up to %.1f MiB" % (
        len(ok), n, len(flagged), kept / (1 << 20))
    bad = [a for a in answers if a not in flagged]
    return note + ("; %s" % bad[0] if bad else "")


def _hlnk_answer(st, whole):
    if not whole:
        return {"status": "cut short after %d bytes" % st["got"], "size": st["got"]}
    status = re.search(rb'"status": "(\w+)"', st["head"])
    tail = st["tail"]
    at = tail.rfind(b'"stdout_truncated"')
    out = json.loads(b"{" + tail[at:]) if at >= 0 else {}
    out.update(status=status.group(1).decode() if status else None, size=st["got"])
    return out


def _relay_burst(path, command, n):
    """``n`` HLK2 exec requests at once in relay mode; their output counted and dropped."""
    from hostlink.wire import protocol as p
    sel = selectors.DefaultSelector()
    for i in range(n):
        conn = p.Connection(p.CLIENT)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(conn.send(p.Auth(TOKEN, "bench"))
                  + conn.send(p.Exec(command=command, mode="relay")))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [conn, 0])
    codes = []
    while len(codes) < n:
        for key, _ in sel.select():
            conn, data = key.data[0], key.fileobj.recv(1 << 20)
            conn.receive_data(data)
            while True:
                ev = conn.next_event()
                if isinstance(ev, (p.Stdout, p.Stderr)):
                    key.data[1] += len(ev.data)
                    continue
                if ev is p.NEED_DATA and data:
                    break
                if isinstance(ev, (p.Exit, p.Error)) or ev is None or ev is p.NEED_DATA:
                    codes.append((getattr(ev, "exit_code", ev), key.data[1]))
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    break
    full = sum(1 for code, got in codes if code == 0)
    return "%d/%d exit 0, %.0f MB relayed each" % (full, n, max(got for _, got in codes) / 1e6)


def _mem_total():  # kB
    return _status_file("/proc/meminfo", "MemTotal:")


def _rss(pid):
    return _status(pid, "VmRSS:")


def _hwm(pid):
    return _status(pid, "VmHWM:")


def _status(pid, key):
    return _status_file("/proc/%d/status" % pid, key)


def _status_file(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and 256 MiB instead of 1 GiB")
    ap.add_argument("--only", default=",".join(SECTIONS), metavar="A,B",
                    help="sections to run (default all: %s)" % ",".join(SECTIONS))
    ap.add_argument("--against", metavar="DIR",
                    help="another checkout of hostlink to time beside this one (before/after)")
    args = ap.parse_args()
    only = args.only.split(",")
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error("unknown section(s): %s" % ", ".join(sorted(unknown)))
    b = Bench(args.quick, args.against and os.path.abspath(args.against))
    b.full = set(only) == set(SECTIONS)
    try:
        _, b.sock = b.daemon("main")
        if set(only) - set(NO_DOCKER):
            b.container()
        for name in SECTIONS:
            if name not in only:
                continue
            try:
                getattr(b, name)()
            except Exception as exc:  # one broken section must not lose the others' figures
                b.row("error", "section %s failed: %s" % (name, exc), 0, "", None)
        b.write()
    finally:
        b.close()


if __name__ == "__main__":
    main()
