"""What the client answers under the name ``hostlink-cli``, where the first hostlink's scripts read
it in its words: its -j shapes of get, put, df and targets, its status values. Imported only
under that name (``opts.compat``).
"""

import os

from .session import new_id

# Our statuses it has no word for: its client said "error" for all of them.
STATUS = {"busy": "error", "denied": "error", "connect_failed": "error", "client_error": "error"}
GET_INLINE_MAX = 90 << 20  # up to this its get answered with the content, else streamed


def status(ours):
    return STATUS.get(ours, ours)


def job(reply):
    """A job answer with its state names (it said exited after a cancel, error for a failure)
    and its job_id beside our id."""
    states = {"cancelled": "exited", "failed": "error", "starting": "running"}
    for j in reply.get("jobs", [reply]):
        if "state" in j:
            j["state"] = states.get(j["state"], j["state"])
        if "id" in j:
            j.setdefault("job_id", j["id"])
    return reply


def targets(rows):
    """Its ``targets -j``: the targets of targets.conf only, as {name, transport, socket} or
    {name, transport, address, port}."""
    out = []
    for r in rows:
        if r["name"] == "(local)":
            continue
        if r["transport"] == "unix":
            out.append({"name": r["name"], "transport": "unix", "socket": r["where"]})
        else:
            address, _, port = r["where"].rpartition(":")
            out.append({"name": r["name"], "transport": "tcp", "address": address, "port": int(port)})
    return out


def df(node, path, where, free, total):
    """Its ``df -j``: the stat_fs answer."""
    return {"version": 1, "id": new_id(), "node": node, "status": "ok", "path": path,
            "resolved": where, "free_bytes": int(free), "total_bytes": int(total)}


def got(node, remote, local):
    """Its ``get -j``: one answer per file fetched, as its get (the content in base64) or, over
    90 MiB, its get_stream answered (size and sha256)."""
    return [_file_answer(node, r, path, size) for r, path, size in _files(remote, local)]


def put_done(node, local, remote):
    """Its ``put -j``: one answer per file sent (bytes_written), as its put answered."""
    return [{"version": 1, "id": new_id(), "node": node, "status": "ok", "path": r,
             "bytes_written": size} for r, _, size in _files(remote, local)]


def _files(remote, local):
    """(remote path, local path, size) of each regular file under ``local`` (a file or a tree)."""
    if not os.path.isdir(local):
        return [(remote, local, os.path.getsize(local))]
    out = []
    for base, dirs, names in os.walk(local):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(base, name)
            if os.path.isfile(path) and not os.path.islink(path):
                rel = os.path.relpath(path, local)
                out.append((remote.rstrip("/") + "/" + rel, path, os.path.getsize(path)))
    return out


def _file_answer(node, remote, path, size):
    import base64
    import hashlib
    with open(path, "rb") as f:
        data = f.read() if size <= GET_INLINE_MAX else None
        if data is not None:
            return {"version": 1, "id": new_id(), "node": node, "status": "ok", "path": remote,
                    "size": len(data), "content": base64.b64encode(data).decode("ascii")}
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"status": "ok", "node": node, "size": size, "sha256": h.hexdigest()}
