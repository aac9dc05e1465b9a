"""The supervisor of one detached job: ``python3 -S -m hostlink.daemon.jobrunner SPOOL/ID``.

hostlinkd starts one runner per job in its own session. The runner starts the command, copies its
output into the spool (``stdout``, ``stderr``) up to job_max_spool_bytes (past that it drains and
counts), enforces the timeout on the whole process group, and writes the outcome to ``state.json``.
Because the runner, not the daemon, is the command's parent, a job keeps running, and its outcome
is recorded, across a daemon restart.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time

from .audit import AuditLog
from .spawn import as_user, become_subreaper, build_argv, build_env, exec_options, kill_group

CHUNK = 1 << 16


def write_state(spool, **state):
    """Replace state.json atomically (readers never see half a file)."""
    tmp = os.path.join(spool, "state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, os.path.join(spool, "state.json"))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class _Spec:
    """The job as hostlinkd wrote it in job.json: what spawn.build_* need."""

    def __init__(self, d):
        self.command = d.get("command")
        self.argv = d.get("argv")
        self.env = [tuple(p) for p in d.get("env", [])]
        self.cwd = d["cwd"]
        self.shell = d["shell"]
        self.namespace_pid = d.get("namespace_pid", 0)


def descendants(pid):
    """Every live descendant of ``pid``, read from /proc (children before grandchildren)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def sweep(sig):
    """Signal everything this runner started, what left the process group included: the runner
    is a child subreaper, so a command's daemonized grandchildren stay below it."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def signal_all(proc, sig):
    """``sig`` to the command's process group and to everything that left it."""
    kill_group(proc.pid, sig)
    sweep(sig)


def main(spool):
    become_subreaper()
    job = read_json(os.path.join(spool, "job.json"))
    argv, kw = _command(job)
    started = time.time()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, close_fds=True, start_new_session=True,
                                restore_signals=True, **kw)
    except OSError as exc:
        write_state(spool, state="failed", error=str(exc), started=started, ended=time.time(),
                    exit_code=127, runner_pid=os.getpid())
        return 0
    for fd in (job.get("cwd_fd", -1), job.get("exe_fd", -1)):
        if fd >= 0:
            os.close(fd)  # the command has its directory and its executable now
    write_state(spool, state="running", pid=proc.pid, runner_pid=os.getpid(), started=started)
    # hostlinkd cancels a job by signalling its runner: SIGTERM asks, SIGUSR1 kills.
    signal.signal(signal.SIGTERM, lambda s, f: signal_all(proc, signal.SIGTERM))
    signal.signal(signal.SIGUSR1, lambda s, f: signal_all(proc, signal.SIGKILL))
    if os.path.exists(os.path.join(spool, "cancel")):
        kill_group(proc.pid, signal.SIGTERM)  # cancelled while it was starting
    counts, timed_out = _supervise(proc, job, spool, started)
    final = _outcome(proc, spool, started, counts, timed_out, job["max_spool_bytes"])
    write_state(spool, **final)
    _audit(job, final)
    return 0


def _command(job):
    """(argv, Popen keywords) that run the job's command as its user, in its directory."""
    import pwd
    spec = _Spec(job)
    user = pwd.getpwnam(job["user"])
    env = build_env(spec, user, spec.env)
    argv = build_argv(spec, spec, env, spec.cwd)
    kw = as_user(user, job.get("gid", user.pw_gid))
    if spec.namespace_pid:
        exe = job.get("exe_path") or ""
        if exe and spec.argv:
            argv[argv.index("--") + 1] = exe
        kw.update(env=env)
        return argv, kw
    # hostlinkd handed us the directory and executable it checked (policy.Target), as descriptors
    # at the numbers job.json names: the command starts from those, never from a path again.
    kw.update(exec_options(job.get("cwd_fd", -1), job.get("exe_fd", -1), job.get("exe_path", ""),
                           job.get("exe_by_path", True), argv), env=env)
    kw.setdefault("cwd", spec.cwd)
    return argv, kw


def _supervise(proc, job, spool, started):
    """Copy the command's output into the spool until it ends, enforcing the timeout on the whole
    group; (bytes per stream, timed out)."""
    cap = job["max_spool_bytes"]
    counts = {"stdout": 0, "stderr": 0}
    files = {"stdout": open(os.path.join(spool, "stdout"), "ab"),
             "stderr": open(os.path.join(spool, "stderr"), "ab")}
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    deadline = started + job["timeout_ms"] / 1000 if job["timeout_ms"] else None
    timed_out = False
    kill_at = None
    while sel.get_map():
        now = time.time()
        if deadline and now >= deadline and not timed_out:
            timed_out = True
            signal_all(proc, signal.SIGTERM)
            kill_at = now + job["kill_grace_ms"] / 1000
        if kill_at and now >= kill_at:
            signal_all(proc, signal.SIGKILL)
            kill_at = None
        for key, _ in sel.select(0.5):
            _copy(key, sel, files, counts, cap)
        if proc.poll() is not None and not sel.get_map():
            break
    for f in files.values():
        f.close()
    return counts, timed_out


def _copy(key, sel, files, counts, cap):
    """One read from a ready output pipe into its spool file, up to the cap on both together."""
    data = os.read(key.fileobj.fileno(), CHUNK)
    if not data:
        sel.unregister(key.fileobj)
        return
    name = key.data
    room = cap - counts["stdout"] - counts["stderr"]
    if room > 0:
        files[name].write(data[:room])
        files[name].flush()
    counts[name] += len(data)  # past the cap: drained and counted, never blocking the job


def _outcome(proc, spool, started, counts, timed_out, cap):
    """Wait for the command, clear up what it left, and return the final state.json."""
    proc.wait()
    if timed_out or os.path.exists(os.path.join(spool, "cancel")):
        signal_all(proc, signal.SIGKILL)  # what is left of its group, and what left the group
    while True:  # reap what the sweep and the subreaper gave us
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    code = proc.returncode
    sig = -code if code < 0 else 0
    code = 128 + sig if sig else code
    cancelled = os.path.exists(os.path.join(spool, "cancel"))
    state = "timeout" if timed_out else "cancelled" if cancelled else "exited"
    return dict(state=state, pid=proc.pid, runner_pid=os.getpid(), started=started,
                ended=time.time(), exit_code=code, signal=sig, stdout_bytes=counts["stdout"],
                stderr_bytes=counts["stderr"], spool_truncated=counts["stdout"] + counts["stderr"] > cap)


def _audit(job, final):
    """The job's end record, written as the daemon writes its records (whole or not at all)."""
    try:
        audit = AuditLog(job.get("audit_log") or "")
    except OSError:
        return
    audit.write(event="job_end", job=job["id"], client=job["client"], result=final["state"],
                exit_code=final["exit_code"], signal=final["signal"],
                duration_ms=int((final["ended"] - final["started"]) * 1000))
    audit.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
