"""The first hostlink's job requests over HLNK (list, status, tail, cancel), answered from our
job spool (jobs.py) in its shapes: its field names, its states (a cancelled job has ``exited``,
a failed one ``error``), a tail read by offset as its client pages it.
"""

import os

from .errors import BadRequest, NotFound
from .hlnk_request import count
from .jobs import FINAL

# Its states: "starting" was only the instant before its supervisor wrote; ours lasts until the
# runner has started, and the job is accepted by then.
STATES = {"starting": "running", "cancelled": "exited", "failed": "error"}
TAIL_DEFAULT = 64 << 10  # its tail sizes: what one answer carries by default, and at most
TAIL_MAX = 4 << 20
LIST_MAX = 256


def info(st):
    """Its description of a job, from our status of it."""
    done = st["state"] in FINAL
    out_kept, err_kept = st.get("stdout_spooled", 0), st.get("stderr_spooled", 0)
    out_all, err_all = st.get("stdout_bytes", out_kept), st.get("stderr_bytes", err_kept)
    ended, began = st.get("ended"), st.get("started")
    out = {"job_id": st["id"], "state": STATES.get(st["state"], st["state"]), "done": done,
           "command": st["command"], "created_at": st["created"], "ended_at": int(ended or 0),
           "exit_code": st.get("exit_code", -1) if done else -1,
           "duration_ms": int((ended - began) * 1000) if ended and began else 0,
           "stdout_bytes": out_kept, "stderr_bytes": err_kept,
           "stdout_original_bytes": out_all, "stderr_original_bytes": err_all,
           "stdout_truncated": out_all > out_kept, "stderr_truncated": err_all > err_kept,
           "timeout_ms": st["timeout_ms"], "pid": st.get("pid", 0), "workdir": st["cwd"]}
    if st.get("error"):
        out["error_msg"] = st["error"]
    return out


async def run(rq):
    """Answer a job request."""
    jobs, obj = rq.state.jobs, rq.obj
    action = obj.get("action") if isinstance(obj.get("action"), str) else ""
    rq.record.update(event="job_" + (action or "?"), job=str(obj.get("job_id", ""))[:40])
    if rq.client.ping_only:
        await rq.fail("error", "client %s may only ping" % rq.client.name)
        return
    jobs.sweep()
    if action == "list":
        rq.record["result"] = "ok"
        await rq.answer(jobs=[info(st) for st in jobs.listing(rq.client)[:LIST_MAX]])
        return
    ident = obj.get("job_id")
    if not isinstance(ident, str) or len(ident) != 12 or any(c not in "0123456789abcdef" for c in ident):
        await rq.fail("bad_request", "invalid job id (expected 12 hex characters)")
        return
    try:
        job = jobs.find(rq.client, ident)
    except (NotFound, BadRequest):
        await rq.fail("not_found", "no such job")
        return
    if action not in ACTIONS:
        await rq.fail("bad_request", "job action must be status, tail, list or cancel")
        return
    try:
        answer = ACTIONS[action](jobs, job, obj)
    except BadRequest as exc:
        await rq.fail("bad_request", exc.message)
        return
    rq.record["result"] = "ok"
    await rq.answer(**answer)


def _status(jobs, job, obj):
    return info(jobs.status(job))


def _cancel(jobs, job, obj):
    st = jobs.status(job)
    if st["state"] in FINAL:
        return dict(info(st), signalled=False, error_msg="job already finished")
    try:
        jobs.cancel(job, kill=obj.get("signal") == "KILL")
    except NotFound as exc:  # it ended just now
        return dict(info(jobs.status(job)), signalled=False, error_msg=exc.message)
    return dict(info(jobs.status(job)), signalled=True)


def _tail(jobs, job, obj):
    stream = obj.get("stream", "stdout")
    if stream not in ("stdout", "stderr"):
        raise BadRequest("stream must be stdout or stderr")
    offset = count(obj.get("offset"))
    want = count(obj.get("max_bytes"), TAIL_MAX) or TAIL_DEFAULT
    st = jobs.status(job)  # before reading: a done job's spool is whole
    data = b""
    try:
        with open(os.path.join(jobs.spool, job["id"], stream), "rb") as f:
            f.seek(offset)
            data = f.read(want)
    except OSError:
        pass
    return dict(info(st), stream=stream, data=data.decode("utf-8", "replace"), offset=offset,
                next_offset=offset + len(data), binary=b"\0" in data)


ACTIONS = {"status": _status, "cancel": _cancel, "tail": _tail}
