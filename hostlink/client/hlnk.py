"""The client's side of the first hostlink's protocol (a target with ``protocol = hlnk``): one
JSON request and its JSON answer over a connected socket (session.hlnk_request connects)."""

from ..wire import protocol as p
from ..wire.hlnk import MAX_RESPONSE, Reader, encode
from .errors import AuthFailed, BadRequest, ConnectFailed, HostlinkError, TimedOut


def request(sock, where, obj):
    """Send the HLNK request ``obj`` on ``sock`` (to the daemon at ``where``); its JSON answer."""
    try:
        sock.sendall(encode(obj))
        reader = Reader(MAX_RESPONSE)
        while True:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectFailed("%s closed the connection without an answer" % where)
            reader.feed(data)
            resp = reader.next()
            if resp is not None:
                return resp
    except OSError as exc:
        raise ConnectFailed("lost %s: %s" % (where, exc.strerror or exc)) from None
    except p.RemoteProtocolError as exc:
        raise ConnectFailed("%s answered something that is not an HLNK frame: %s" % (where, exc)) from None


def pong(resp):
    """(node, uptime_s) from the answer to a ping."""
    if resp.get("status") != "ok":
        raise AuthFailed(resp.get("error_msg") or resp.get("status"))
    return resp.get("node", ""), resp.get("uptime_s", 0)


def exec_fields(req):
    """The HLNK exec request of the protocol.Exec ``req`` (without version, id and token)."""
    return {"type": "exec", "command": req.command if req.command is not None else " ".join(req.argv),
            "timeout_ms": req.timeout_ms, "env": dict(req.env), "workdir": req.cwd or "/"}


def check(resp):
    """The error a failed answer maps to, or None for status ok."""
    status = resp.get("status")
    if status == "timeout":
        return TimedOut(resp.get("error_msg") or "timed out")
    if status != "ok":
        cls = {"auth_failed": AuthFailed, "bad_request": BadRequest}.get(status, HostlinkError)
        return cls(resp.get("error_msg") or status)
    return None
