"""Why the daemon refuses a request: one class per wire error code, as asyncssh builds its errors.

A ``Refused`` travels up to the wire protocol that received the request, which answers it with
its code and message (HLK2: an Error frame; HLNK: a response status) and audits both.
"""

class Refused(Exception):
    """The daemon will not or cannot carry out a request; ``code`` is the wire error code."""

    code = "internal"

    def __init__(self, message, status=0):
        super().__init__(message)
        self.message = message
        self.status = status  # what a shell would exit with instead (127, 126), or 0


class AuthFailed(Refused):
    code = "auth_failed"


class AuthTimeout(Refused):
    code = "auth_timeout"


class Busy(Refused):
    code = "busy"


class BadRequest(Refused):
    code = "bad_request"


class Denied(Refused):
    code = "denied"


class BadCwd(Refused):
    code = "bad_cwd"


class SpawnFailed(Refused):
    code = "spawn_failed"


class NotFound(Refused):
    code = "not_found"


class ShuttingDown(Refused):
    code = "shutting_down"


class Internal(Refused):
    code = "internal"


# Wire error code -> class, for every code of protocol.ERROR_CODES (not imported from there: job
# runners import this module through spawn.py and start faster without the protocol).
BY_CODE = {cls.code: cls for cls in (AuthFailed, AuthTimeout, Busy, BadRequest, Denied, BadCwd,
                                     SpawnFailed, NotFound, ShuttingDown, Internal)}
