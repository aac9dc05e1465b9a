"""The text of ``hostlink --help``: loaded only to print it."""

from .session import DEFAULT_SOCKET

USAGE = """\
usage: hostlink [OPTIONS] COMMAND [ARGS]

Run commands on the host from inside a container, through hostlinkd.

commands:
  exec CMD...        run CMD with the host's shell (words are joined with spaces, as ssh does)
  exec --argv PROG ARG...
                     run PROG with exactly these arguments, no shell
  ping               check the daemon: prints [node] pong - uptime Xs
  targets [--ping]   list the targets of targets.conf (-j for JSON); --ping checks each
  doctor             check the socket, its permissions, the daemon and the token, with fixes
  cp SRC DST         copy files or directories, one side host:PATH (or TARGET:PATH, or - for a
                     tar stream): symlinks, modes, times and empty directories kept
                     [--exclude GLOB]... [--verify]
  put LOCAL REMOTE   the same as cp LOCAL host:REMOTE;  get REMOTE LOCAL: cp host:REMOTE LOCAL
  df PATH            free space on the host's filesystem that holds PATH
  exec -D CMD        start CMD as a detached job: prints its id at once
  job list | status ID | tail ID [-f] [--stderr] | wait ID | cancel ID [--kill] | rm ID
                     detached jobs (wait exits as exec would have)
  shim install NAME... [--dir DIR]
                     make NAME a link to this client: run as NAME, it runs NAME on the host
                     with exactly its arguments (shim list, shim remove NAME manage them)

options:
  -s, --socket PATH        Unix socket (env HOSTLINK_SOCKET, default %s)
  -k, --token @FILE        token from FILE (env HOSTLINK_TOKEN_FILE, HOSTLINK_TOKEN); must match
                           auth_token in hostlink.conf (-k TOKEN works but shows it to ps)
  -t, --target NAME        a target from targets.conf (env HOSTLINK_TARGET); a,b,c runs on each
      --all                run on every target of targets.conf, lines prefixed [name]
  -a, --address HOST:PORT  a daemon on TCP with no targets entry (with --fingerprint, or --plain)
  -F, --targets-file PATH  targets file (env HOSTLINK_TARGETS)
  -w, --workdir DIR        working directory on the host
  -e, --env NAME=VALUE     set a variable for the command (repeatable)
  -T, --timeout MS         kill the command's process group after MS milliseconds
  -C, --connect-timeout MS give up connecting after MS milliseconds (default 5000)
  -j, --json               print one JSON object with stdout, stderr and exit_code
  -x, --exit-status        exit with the remote command's own status, as ssh does
  -m, --max-output SIZE    keep at most SIZE (4K, 16M) of each stream, drain the rest (also
                           --max-stdout, --max-stderr); -j reports *_truncated
  -O, --output-to-file     write the output to files (hl_ID_stdout, hl_ID_stderr in
                           $HOSTLINK_OUTPUT_DIR or /tmp) and report their paths
      --tty                give the command a pseudo-terminal on the host (as ssh -t), relayed
      --relay              stream through the connection instead of passing this process's
                           stdin/stdout/stderr to the command (always so with -j and TCP)
  -V, --version            print the version
  -h, --help               print this help

exit codes: 0 ok, 1 the remote command failed (its code is exit_code in -j), 2 cannot connect,
3 authentication failed, 4 server busy (max_concurrent reached; retry later), 5 timeout (the
remote process group was killed), 6 denied by policy, 7 client error (bad arguments, targets).
With -x: the remote status itself, 124 on timeout, 255 when hostlink failed.
"""


def text():
    """The help text, with the default socket filled in."""
    return USAGE % DEFAULT_SOCKET
