"""The client's errors: each carries the exit code and the -j status it maps to.

Library code raises these; only main.py turns them into exit codes, and output.py prints them.
"""


class HostlinkError(Exception):
    """Base of every error the client reports; ``exit_code`` is the seed's code for it."""

    exit_code = 7
    status = "error"
    shell_status = 0  # what a shell would exit with instead (127 not found), for -x and shims

    def __init__(self, message):
        super().__init__(message)
        self.message = message
        self.answered = False  # the -j object for this failure is already written
        self.remote = False  # the daemon answered it (an Error frame, a timeout), not a local failure


class RemoteFailed(HostlinkError):
    """The command could not run on the host (missing program, working directory)."""
    exit_code, status = 1, "error"


class TransferFailed(HostlinkError):
    """A file could not be read or written, on either side (missing, permission, no space)."""
    exit_code, status = 1, "error"


class Interrupted(HostlinkError):
    """We forwarded signal N and the command ended by it: exit 128+N in every mode, as a shell
    reports a command that Ctrl-C ended (nothing more to say: the message is empty)."""
    status = "interrupted"

    def __init__(self, signum):
        super().__init__("")
        self.exit_code = self.shell_status = 128 + signum


class Leave(KeyboardInterrupt):
    """We leave on signal ``signum`` (a second Ctrl-C, or one while queued): exit 128+N. The daemon
    ends what it started for us when it sees us go. A KeyboardInterrupt, so nothing catches it on
    the way up as it would a HostlinkError."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class ConnectFailed(HostlinkError):
    """No connection to the daemon: no socket, refused, unreachable, or it went away."""
    exit_code, status = 2, "connect_failed"


class AuthFailed(HostlinkError):
    """The daemon refused the token, or no token was given."""
    exit_code, status = 3, "auth_failed"


class Busy(HostlinkError):
    """The daemon is at max_concurrent or max_connections."""
    exit_code, status = 4, "busy"


class TimedOut(HostlinkError):
    """The command ran past its timeout and its process group was killed."""
    exit_code, status = 5, "timeout"


class Denied(HostlinkError):
    """The daemon's policy refused the request."""
    exit_code, status = 6, "denied"


class UsageError(HostlinkError):
    """Bad arguments, bad -e, missing or invalid targets file, unknown target."""
    exit_code, status = 7, "client_error"


class ClientBug(HostlinkError):
    """This client tried to send what the protocol forbids: our fault, never the daemon's."""
    exit_code, status = 7, "client_error"


class BadRequest(HostlinkError):
    """The daemon refused the request as malformed (empty command, over a limit)."""
    exit_code, status = 7, "bad_request"


# The daemon's error codes (protocol.ERROR_CODES) mapped to the client's errors.
FROM_DAEMON = {
    "auth_failed": AuthFailed, "auth_timeout": AuthFailed, "busy": Busy,
    "bad_request": BadRequest, "denied": Denied, "bad_cwd": RemoteFailed,
    "spawn_failed": RemoteFailed, "not_found": RemoteFailed, "shutting_down": ConnectFailed, "internal": ConnectFailed,
}
