"""Detached jobs: started by ``exec -D``, kept in job_spool_dir, supervised by jobrunner.py.

Each job is a directory ``SPOOL/ID`` (0700) with ``job.json`` (what to run, for which client),
``state.json`` (written by its runner), ``stdout`` and ``stderr``. The daemon only reads these, so
jobs and their records outlive a daemon restart; a job whose runner is gone without an outcome is
reported ``lost``. A client sees and touches only its own jobs. A restarted daemon counts the
jobs still running (adopt) until their runners exit.
"""

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import time

from ..wire import protocol as p
from .errors import BadRequest, NotFound, SpawnFailed
from .jobrunner import read_json
from .spawn import helper, kill_group

log = logging.getLogger("hostlinkd")

FINAL = ("exited", "timeout", "cancelled", "failed", "lost")
POLL = 0.05  # how often a follower looks for new output: well under a human's notice
EXIT_POLL = 1.0  # without pidfds (before Linux 5.3): how often an adopted runner is looked for
RUNNER = b"'hostlink.daemon.jobrunner'"  # in a runner's command line (spawn.helper)


def _alive(pid, ident):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return ident.encode() in f.read()
    except OSError:
        return False


class JobSpool:
    """The detached jobs in job_spool_dir: start one, and answer a client's JobRequest."""

    def __init__(self, state):
        self.state = state  # for the current configuration and the reaper

    @property
    def spool(self):
        return self.state.cfg.job_spool_dir

    def start(self, client, req, target, user, timeout):
        """Start ``req`` as a detached job in ``target`` (a held policy.Target: its directory and
        executable descriptors are handed to the runner, which starts the command from them);
        returns its id."""
        count, spool = self.state.limits.job(client.name, self.state.cfg.job_max_spool_bytes)
        try:
            return self._start(client, req, target, user, timeout, (count, spool))
        except BaseException:
            count.release()
            spool.release()
            raise

    def _start(self, client, req, target, user, timeout, tickets):
        cwd = target.cwd
        exe = target.exe if req.argv is not None and not self.state.cfg.namespace_pid else None
        cfg = self.state.cfg
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        os.chmod(self.spool, 0o700)
        ident = os.urandom(6).hex()  # 12 hex digits, as the first hostlink's ids
        d = os.path.join(self.spool, ident)
        os.mkdir(d, 0o700)
        job = {"id": ident, "client": client.name, "command": req.command,
               "argv": list(req.argv) if req.argv is not None else None, "env": list(req.env),
               "cwd": cwd, "user": user.pw_name, "gid": user.pw_gid, "shell": cfg.shell,
               "namespace_pid": cfg.namespace_pid, "timeout_ms": timeout,
               "kill_grace_ms": cfg.kill_grace_ms, "max_spool_bytes": cfg.job_max_spool_bytes,
               "audit_log": cfg.audit_log, "created": time.time(),
               "cwd_fd": target.cwd_fd, "exe_fd": exe.fd if exe else -1,
               "exe_path": exe.path if exe else "", "exe_by_path": exe.by_path if exe else True}
        with open(os.path.join(d, "job.json"), "w") as f:
            json.dump(job, f)
        argv, env = helper("jobrunner", d)
        env.update(PATH="/usr/bin:/bin", LANG="C.UTF-8")
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(d, "runner.log"), "wb"), cwd="/",
                                    start_new_session=True, close_fds=True,
                                    pass_fds=[fd for fd in (target.cwd_fd, job["exe_fd"]) if fd >= 0])
        except OSError as exc:
            raise SpawnFailed("cannot start the job runner: %s" % exc.strerror) from None
        self.state.reaper.watch(proc, lambda status: [t.release() for t in tickets])
        try:  # for a daemon restarted before the runner wrote state.json (adopt)
            with open(os.path.join(d, "runner.pid"), "w") as f:
                f.write("%d\n" % proc.pid)
        except OSError:
            pass  # the job runs regardless; only such a restart would miss it
        return ident

    def adopt(self):
        """Count the jobs a previous daemon started whose runners still run: each holds its
        tickets, under its client, until its runner exits. Called once, before listening."""
        try:
            names = sorted(os.listdir(self.spool))
        except OSError:
            return
        adopted = 0
        for name in names:
            d = os.path.join(self.spool, name)
            pid = _runner_pid(d)
            if not pid:
                continue
            job = read_json(os.path.join(d, "job.json"))
            if not isinstance(job, dict) or not isinstance(job.get("client"), str):
                if _runs_job(pid, d):
                    log.warning("job %s: its runner (pid %d) runs but its job.json cannot be "
                                "read: not counted", name, pid)
                continue
            size = job.get("max_spool_bytes")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                size = self.state.cfg.job_max_spool_bytes
            tickets = self.state.limits.job_running(job["client"], size)
            if _on_exit(self.state.loop, pid, d, lambda ts=tickets: [t.release() for t in ts]):
                adopted += 1
            else:  # gone already, or the pid is another process's now
                for t in tickets:
                    t.release()
        if adopted:
            log.info("counting %d job(s) still running from before the restart", adopted)

    def find(self, client, ident):
        """The record of job ``ident`` of ``client``; BadRequest or NotFound."""
        return self._find(client, ident)

    def listing(self, client):
        """The status of each job of ``client``, newest first."""
        return self._list(client)

    def cancel(self, job, kill=False):
        """Signal a running job's group (SIGKILL with ``kill``); NotFound once it ended."""
        return self._cancel(job, kill)

    def _find(self, client, ident):
        if len(ident) != 12 or any(c not in "0123456789abcdef" for c in ident):
            raise BadRequest("malformed job id %r (12 lowercase hex digits)" % ident[:40])
        job = read_json(os.path.join(self.spool, os.path.basename(ident), "job.json")) if ident else None
        if job is None or job.get("client") != client.name:
            raise NotFound("no job %s (for client %s)" % (ident, client.name))
        return job

    def status(self, job):
        d = os.path.join(self.spool, job["id"])
        state = read_json(os.path.join(d, "state.json")) or {"state": "starting"}
        if state["state"] in ("running", "starting"):
            runner = state.get("runner_pid")
            if runner and not _alive(runner, job["id"]):
                state = dict(state, state="lost")
            elif not runner and time.time() - job["created"] > 30:
                state = dict(state, state="lost")
        out = {"id": job["id"], "command": job["command"] if job["command"] is not None
               else " ".join(job["argv"]), "cwd": job["cwd"], "created": int(job["created"]),
               "timeout_ms": job["timeout_ms"]}
        out.update({k: v for k, v in state.items() if k != "runner_pid"})
        for name in ("stdout", "stderr"):
            try:
                out[name + "_spooled"] = os.path.getsize(os.path.join(d, name))
            except OSError:
                out[name + "_spooled"] = 0
        return out

    def sweep(self):
        """Remove finished jobs older than job_retention_s."""
        try:
            names = os.listdir(self.spool)
        except OSError:
            return
        cutoff = time.time() - self.state.cfg.job_retention_s
        for name in names:
            state = read_json(os.path.join(self.spool, name, "state.json")) or {}
            if state.get("state") in FINAL and state.get("ended", time.time()) < cutoff:
                shutil.rmtree(os.path.join(self.spool, name), ignore_errors=True)

    # ---- requests ------------------------------------------------------------------------------

    async def answer(self, client, req, send, gone=None):
        """Answer one JobRequest: (result to audit, last event to send); ``send(event)`` sends
        what comes before it; ``gone()`` says whether the client hung up (a wait or a follow
        ends then, not with the job)."""
        self.sweep()
        if req.action == "list":
            return _reply({"jobs": self._list(client)})
        job = self._find(client, req.id)
        if req.action == "status":
            return _reply(self.status(job))
        if req.action == "cancel":
            return _reply(self._cancel(job, req.kill))
        if req.action == "rm":
            if self.status(job)["state"] not in FINAL:
                raise BadRequest("job %s is still running: cancel it first" % job["id"])
            shutil.rmtree(os.path.join(self.spool, job["id"]), ignore_errors=True)
            return _reply({"id": job["id"], "removed": True})
        if req.action in ("tail", "wait"):
            return await self._stream(send, job, req, gone)
        raise BadRequest("unknown job action %r" % req.action)

    def _list(self, client):
        jobs = []
        for name in os.listdir(self.spool) if os.path.isdir(self.spool) else ():
            job = read_json(os.path.join(self.spool, name, "job.json"))
            if job and job.get("client") == client.name:
                jobs.append(self.status(job))
        jobs.sort(key=lambda j: j["created"], reverse=True)  # newest first
        return jobs

    def _cancel(self, job, kill):
        st = self.status(job)
        if st["state"] in FINAL:
            raise NotFound("job %s already ended (%s)" % (job["id"], st["state"]))
        open(os.path.join(self.spool, job["id"], "cancel"), "w").close()
        state = read_json(os.path.join(self.spool, job["id"], "state.json")) or {}
        if state.get("runner_pid") and _alive(state["runner_pid"], job["id"]):
            # The runner signals the group and everything that left it (jobrunner.sweep).
            os.kill(state["runner_pid"], signal.SIGUSR1 if kill else signal.SIGTERM)
        elif st.get("pid"):
            kill_group(st["pid"], 9 if kill else 15)
        return {"id": job["id"], "cancelled": True, "signal": 9 if kill else 15}

    async def _stream(self, send, job, req, gone=None):
        """tail: the spooled output (and, with follow, what is written next); wait: the outcome."""
        await send(p.Started(0, 0))
        path = os.path.join(self.spool, job["id"], "stderr" if req.stream == "stderr" else "stdout")
        pos = 0
        follow = req.follow or req.action == "wait"
        while True:
            st = self.status(job)
            if req.action == "tail":
                pos = await _send_new(send, path, pos)
            if not follow or st["state"] in FINAL:
                if req.action == "tail" and follow:
                    pos = await _send_new(send, path, pos)  # the last words
                break
            if gone is not None and gone():
                raise ConnectionResetError("the client went away while following job %s" % job["id"])
            await asyncio.sleep(POLL)
        if req.action != "wait":
            return st["state"], p.Exit(0, 0, False, 0)
        code = st.get("exit_code", 255 if st["state"] == "lost" else 0)
        now = time.time()
        return st["state"], p.Exit(code, st.get("signal", 0), st["state"] == "timeout",
                                   int((st.get("ended", now) - st.get("started", now)) * 1000))


def _runner_pid(d):
    """The runner pid job dir ``d`` records (its runner's state.json, else what the daemon that
    started it wrote), or 0."""
    state = read_json(os.path.join(d, "state.json"))
    pid = state.get("runner_pid") if isinstance(state, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        try:
            with open(os.path.join(d, "runner.pid")) as f:
                pid = int(f.read(32))
        except (OSError, ValueError):
            return 0
    return pid if pid > 0 else 0


def _runs_job(pid, d):
    """Whether ``pid`` is the runner hostlinkd started for job dir ``d``: ours (every uid, read
    from status: an undumpable process's /proc entry shows as root's whoever runs it) and the
    jobrunner helper with ``d`` as its last argument."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            uids = next((l.split()[1:] for l in f if l.startswith(b"Uid:")), None)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return uids == [str(os.geteuid()).encode()] * 4 and args[-2:] == [os.fsencode(d), b""] and \
        any(RUNNER in a for a in args[:-2])


def _on_exit(loop, pid, d, done):
    """Call ``done()`` once the runner ``pid`` of job dir ``d`` exits; False (and no call) when
    ``pid`` is no such runner now. It is not our child: a pidfd, taken before the check so that
    the process checked is the one watched, becomes readable when it exits."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):
        fd = -1
    if not _runs_job(pid, d):
        if fd >= 0:
            os.close(fd)
        return False
    if fd >= 0:
        def gone():
            loop.remove_reader(fd)
            os.close(fd)
            done()
        loop.add_reader(fd, gone)
    else:
        def look():
            if _runs_job(pid, d):
                loop.call_later(EXIT_POLL, look)
            else:
                done()
        loop.call_later(EXIT_POLL, look)
    return True


def _reply(obj):
    return "ok", p.Reply(json.dumps(obj))


async def _send_new(send, path, pos):
    """Send what ``path`` holds past ``pos`` as Stdout frames; returns the new position. A log view:
    either stream is printed on stdout, as the first hostlink did."""
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            while True:
                data = f.read(p.MAX_FRAME)
                if not data:
                    return pos
                pos += len(data)
                await send(p.Stdout(data))
    except FileNotFoundError:
        return pos
