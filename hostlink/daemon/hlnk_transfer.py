"""The first hostlink's transfers over HLNK, each done by our transfer helper (hlnk_helper.run):

    put {path, content (base64), mode, mkdir}        receive PATH --file (stdin: the bytes)
    put_stream {path, size, mode, mkdir}, chunks, {sha256}    the same, fed as the chunks come
    get {path}               send PATH --raw (kept, answered in base64, up to 90 MiB)
    get_stream {path}        stat, then send PATH --raw, each read a chunk frame, then {sha256}
    get_stat {path}          stat; a directory: send PATH, its tar stream read for the file list
    stat_fs {path}           df PATH

Answers and error messages have its shapes, so its clients (get of a directory, put of a tree,
its free-space check) work unchanged.
"""

import base64
import hashlib
import json
import os
import time

from ..wire.hlnk import header
from . import hlnk_helper
from .hlnk_helper import Helper
from .hlnk_request import count, status_of

GET_MAX = 90 << 20  # its limit for a file in one frame: bigger ones its client streams
LIST_MAX = 100000  # files in one get_stat answer, as its daemon lists at most
LIST_BYTES = 16 << 20  # of the helper's listing kept: past it, truncated as past LIST_MAX
B64_CHUNK = 3 << 20  # base64 is written in pieces of a multiple of 3 bytes


async def _path(rq, op):
    path = rq.obj.get("path")
    if not isinstance(path, str) or not path:
        await rq.fail("bad_request", "%s: path is required" % op)
        return None
    return path


async def _failed(rq, helper, op, path, verb="open"):
    """Answer a helper run that was refused or failed; False when it went well."""
    if helper.refusal is not None:
        code, message = helper.refusal
        await rq.fail(status_of(code), message)  # busy, denied: in our words, as for every request
    elif not helper.ok:
        await rq.fail("error", "%s: cannot %s %s: %s" % (op, verb, path, helper.reason()))
    else:
        return False
    return True


async def _stat(rq, op):
    """(path, kind, size) of the request's path as the client's user sees it, or None once
    answered."""
    path = await _path(rq, op)
    if path is None:
        return None
    helper = await hlnk_helper.run(rq, "stat", [path], Helper(rq, keep=4096))
    if await _failed(rq, helper, op, path, "stat" if op == "get_stat" else "open"):
        return None
    kind, _mode, _mtime, size, _sha = helper.stdout.decode().split()
    return path, kind, int(size)


def _mode(rq):
    # No set-id bits: a file a restricted client writes as root must not run as root.
    mode = count(rq.obj.get("mode"))
    return mode & 0o777 if mode else 0o644


def _receive_args(rq, path):
    # --exact: one file written as PATH itself; were PATH a directory, the helper refuses it,
    # as the first hostlink's open() did.
    name = os.path.basename(os.path.normpath(path)) or "file"
    args = [path, "--file", name, "--exact", "--file-mode", "%o" % _mode(rq),
            "--mtime", str(int(time.time()))]
    return args + (["--mkdir"] if rq.obj.get("mkdir") is True else [])


async def put(rq):
    path = await _path(rq, "put")
    content = rq.obj.get("content")
    if path is None:
        return
    if not isinstance(content, str):
        await rq.fail("bad_request", "put: content (base64) is required")
        return
    try:
        data = base64.b64decode(content)
    except ValueError:
        await rq.fail("bad_request", "put: invalid base64 content")
        return

    async def feed(command, fd):
        return await hlnk_helper.write_all(command.loop, fd, data)
    helper = await hlnk_helper.run(rq, "receive", _receive_args(rq, path), Helper(rq, feed=feed))
    if not await _failed(rq, helper, "put", path):
        rq.record["result"] = "ok"
        await rq.answer(path=path, bytes_written=len(data))


async def put_stream(rq):
    path = await _path(rq, "put_stream")
    size = rq.obj.get("size")
    if path is None:
        return
    if not isinstance(size, (int, float)) or size < 0:
        await rq.fail("bad_request", "put_stream: size is required")
        return
    got = {"size": 0, "sha": hashlib.sha256(), "trailer": None}

    async def ready():
        await rq.answer(ready=True)

    async def feed(command, fd):
        while got["size"] < size:
            chunk = await rq.frame()
            if chunk is None or got["size"] + len(chunk) > size:
                raise ConnectionResetError("the stream ended early or ran past its size")
            got["size"] += len(chunk)
            got["sha"].update(chunk)
            if not await hlnk_helper.write_all(command.loop, fd, chunk):
                return True  # it stopped reading: its own message says why
        got["trailer"] = await rq.frame()
        if _trailer_sha(got["trailer"]) != got["sha"].hexdigest():
            command.terminate()  # the helper removes what it wrote: nothing lands under PATH
            return False  # and its stdin stays open until it is gone, so it never completes
        return True
    helper = await hlnk_helper.run(rq, "receive", _receive_args(rq, path),
                                   Helper(rq, feed=feed, on_start=ready))
    digest = got["sha"].hexdigest()
    if got["trailer"] is not None and _trailer_sha(got["trailer"]) != digest:
        await rq.fail("error", "put_stream: sha256 mismatch — file discarded", path=path,
                      size=got["size"], sha256=digest)
    elif not await _failed(rq, helper, "put_stream", path):
        rq.record["result"] = "ok"
        await rq.answer(path=path, size=got["size"], sha256=digest)


def _trailer_sha(payload):
    import json
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, AttributeError, RecursionError):
        return ""
    return obj.get("sha256", "") if isinstance(obj, dict) else ""


async def get(rq):
    path = await _path(rq, "get")
    if path is None:
        return
    helper = await hlnk_helper.run(rq, "send", [path, "--raw"], Helper(rq, keep=GET_MAX))
    if helper.total > GET_MAX:
        await rq.fail("error", "get: file too large (over %d bytes, max %d); get-stream takes it"
                      % (GET_MAX, GET_MAX))
    elif not await _failed(rq, helper, "get", path):
        rq.record["result"] = "ok"
        await _send_content(rq, path, helper.stdout)


async def _send_content(rq, path, data):
    """The get answer, its base64 written in pieces: a 90 MiB file is not copied three times."""
    import json
    resp = rq.response("ok", path=path, size=len(data))
    head = json.dumps(resp, ensure_ascii=False).encode("utf-8", "surrogateescape")[:-1]
    head += b', "content": "'
    length = len(head) + 4 * ((len(data) + 2) // 3) + 2
    await rq.chan.send(header(length), head)
    view = memoryview(data)
    for i in range(0, len(data), B64_CHUNK):
        await rq.chan.send(base64.b64encode(view[i:i + B64_CHUNK]))
    await rq.chan.send(b'"}')


async def get_stream(rq):
    st = await _stat(rq, "get_stream")
    if st is None:
        return
    path, kind, size = st
    if kind != "file":
        await rq.fail("error", "get_stream: cannot open %s: not a regular file" % path)
        return
    await rq.answer(path=path, size=size, stream=True)
    sent = {"size": 0, "sha": hashlib.sha256()}

    async def sink(data):
        sent["size"] += len(data)
        sent["sha"].update(data)
        await rq.chan.send(header(len(data)), data)
    helper = await hlnk_helper.run(rq, "send", [path, "--raw"], Helper(rq, sink=sink))
    if helper.ok:  # else stop: its client sees the stream end short and discards the file
        rq.record["result"] = "ok"
        await rq.answer(sha256=sent["sha"].hexdigest(), size=sent["size"], stream_end=True)


def _listing(helper):
    """(kind of the path, [(relative path, size)], truncated) from the helper's ``list``."""
    lines = helper.stdout.decode("utf-8", "surrogateescape").split("\n")
    kind, files = lines[0] or None, []
    for line in lines[1:]:
        try:
            name, size = json.loads(line)
        except ValueError:
            break  # the last line, cut at LIST_BYTES, or the empty one after the last newline
        files.append((name, size))
    truncated = len(files) > LIST_MAX or helper.total > LIST_BYTES
    return kind, files[:LIST_MAX], truncated


async def get_stat(rq):
    st = await _stat(rq, "get_stat")
    if st is None:
        return
    path, kind, size = st
    if kind == "file":
        rq.record["result"] = "ok"
        await rq.answer(path=path, isdir=False, size=size)
        return
    helper = await hlnk_helper.run(rq, "list", [path, "--limit", str(LIST_MAX)],
                                   Helper(rq, keep=LIST_BYTES))
    kind, files, truncated = _listing(helper)
    if helper.refusal is None and kind != "dir":
        await rq.fail("error", "get_stat: path is neither regular file nor directory")
    elif truncated or not await _failed(rq, helper, "get_stat", path, "read"):
        rq.record["result"] = "ok"
        extra = {"truncated": True, "error_msg": "directory contains more than %d files; narrow "
                 "the path" % LIST_MAX} if truncated else {}
        await rq.answer(path=path, isdir=True, size=sum(s for _, s in files),
                        files=[{"path": n, "size": s} for n, s in files], **extra)


async def stat_fs(rq):
    path = await _path(rq, "stat_fs")
    if path is None:
        return
    helper = await hlnk_helper.run(rq, "df", [path], Helper(rq, keep=4096))
    if await _failed(rq, helper, "stat_fs", path, "stat"):
        return
    where, free, total = helper.stdout.decode("utf-8", "surrogateescape").rsplit(None, 2)
    try:
        block = os.statvfs(where).f_frsize
    except OSError:
        block = 0
    rq.record["result"] = "ok"
    await rq.answer(path=path, resolved=where, free_bytes=int(free), total_bytes=int(total),
                    block_size=block)
