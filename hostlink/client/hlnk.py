"""The client's side of the first hostlink's protocol: one request to a first-hostlink daemon."""

from ..wire import protocol as p
from ..wire.hlnk import MAX_RESPONSE, Reader, encode


def request(ep, obj, connect_timeout_ms):
    """Send one HLNK request to the daemon at ``ep`` and return its JSON answer (client side)."""
    from .session import connect
    from .errors import ConnectFailed
    sock = connect(ep, connect_timeout_ms)
    try:
        sock.sendall(encode(obj))
        reader = Reader(MAX_RESPONSE)
        while True:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectFailed("%s closed the connection without an answer" % ep.where)
            reader.feed(data)
            resp = reader.next()
            if resp is not None:
                return resp
    except OSError as exc:
        raise ConnectFailed("lost %s: %s" % (ep.where, exc.strerror or exc)) from None
    except p.ProtocolError as exc:
        raise ConnectFailed("%s answered something that is not an HLNK frame: %s" % (ep.where, exc)) from None
    finally:
        sock.close()
