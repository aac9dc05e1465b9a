"""The text of ``hostlink --help`` and of each command's ``--help``: loaded only to print it."""

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
  shim install NAME... [--dir DIR] [--timeout MS]
                     make NAME a link to this client: run as NAME, it runs NAME on the host
                     with exactly its arguments (shim list, shim remove NAME manage them)
  help [COMMAND]     this text, or a command's (as COMMAND --help)

options:
  -s, --socket PATH        Unix socket (env HOSTLINK_SOCKET, default %s)
  -k, --token @FILE        token from FILE (env HOSTLINK_TOKEN_FILE, HOSTLINK_TOKEN); must match
                           auth_token in hostlink.conf (-k TOKEN works but shows it to ps);
                           -k beats a target's own token, which beats the environment's
  -t, --target NAME        a target from targets.conf (env HOSTLINK_TARGET); a,b,c runs on each
      --all                run on every target of targets.conf, lines prefixed [name]
  -a, --address HOST:PORT  a daemon on TCP with no targets entry (with --fingerprint, or --plain)
  -F, --targets-file PATH  targets file (env HOSTLINK_TARGETS)
  -w, --workdir DIR        working directory on the host
  -e, --env NAME=VALUE     set a variable for the command (repeatable)
  -T, --timeout MS         kill the command's process group after MS milliseconds; 0: none
                           (env HOSTLINK_TIMEOUT_MS; default: the daemon's default_timeout_ms,
                           30 s as shipped; --tty and shims: none)
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
      --no-wait            when the host runs max_concurrent commands, fail at once (exit 4)
                           instead of waiting for a free slot (the daemon's busy_wait_ms)
  -q, --quiet              no progress line for transfers
  -V, --version            print the version
  -h, --help               print this help

exit codes: 0 ok, 1 the remote command failed (its code is exit_code in -j), or a transfer
failed (a path missing or unreadable, no space), 2 cannot connect, 3 authentication failed,
4 server busy (no free slot within the daemon's wait, or --no-wait), 5 timeout (the remote process
group was killed), 6 denied by policy, 7 client error (bad arguments, targets), 128+N the command
ended by signal N that we forwarded (Ctrl-C: 130). With -x: the remote status itself, 127 when the
program is not found on the host, 124 on timeout, 255 when hostlink failed.
"""


# Each command's --help: what it does, its own arguments, an example. Options of ``hostlink``
# itself (-T, -j, -t...) go before the command and are in the main text.
COMMANDS = {
    "exec": """\
usage: hostlink [OPTIONS] exec [EXEC-OPTIONS] CMD...
       hostlink [OPTIONS] exec [EXEC-OPTIONS] --argv PROG ARG...

Run CMD on the host: the words are joined with spaces and run by the host's shell, as ssh does;
with --argv, PROG runs with exactly these arguments and no shell. Options go before the command
words; what follows the first command word belongs to the command (hostlink exec ls --help runs
ls --help on the host; hostlink exec -- --help runs a program named --help).

exec options: -w DIR, -e NAME=VALUE, -T MS, -j, -x, --argv, --relay, --tty, -D, -m SIZE,
--max-stdout SIZE, --max-stderr SIZE, -O, --no-wait (see hostlink --help)

  hostlink exec "ls -la /srv"            hostlink -T 600000 exec make -j8
  hostlink exec --argv ls -la "/a b"     hostlink -x exec test -d /srv   # exit with its status
  hostlink exec -D "make -j8"            # a detached job: prints its id (hostlink help job)
""",
    "ping": """\
usage: hostlink [OPTIONS] ping

Check that the daemon answers: prints [node] pong - uptime Xs (-j: a JSON object). Exit 2 when it
cannot be reached, 3 when the token is wrong.
""",
    "targets": """\
usage: hostlink [OPTIONS] targets [--ping]

List the targets of targets.conf ($HOSTLINK_TARGETS, -F), the default marked with *; -j prints
JSON; --ping checks each one at once. Use one with -t NAME, or several with -t a,b or --all.
""",
    "doctor": """\
usage: hostlink [OPTIONS] doctor

Check, in order, the socket's directory, the socket, its permissions, the token and the daemon,
and print the fix for the first thing that fails. Exit 0 when all is well, else 2.
""",
    "cp": """\
usage: hostlink [OPTIONS] cp [--exclude GLOB]... [--verify] [-q] SRC DST

Copy files or directories between here and the host, as docker cp does: one side is host:PATH
(or TARGET:PATH), the other a local path, or - for a tar stream on stdin/stdout. Directories copy
whole; symlinks, modes, times and empty directories are kept; nothing partial is left behind.
  --exclude GLOB   leave out names matching GLOB (repeatable)
  --verify         SHA-256 every file on both ends, print a manifest
  -q, --quiet      no progress line (shown on a terminal when a transfer takes over 2 s)

  hostlink cp ./data host:/srv/data      hostlink cp host:/var/log/syslog .
""",
    "put": """\
usage: hostlink [OPTIONS] put [--exclude GLOB]... [--verify] [--mkdir] [--mode OCTAL] LOCAL REMOTE

The same as hostlink cp LOCAL host:REMOTE (see hostlink help cp); --mkdir makes REMOTE's parent,
--mode sets the mode of a copied file.
""",
    "get": """\
usage: hostlink [OPTIONS] get [--exclude GLOB]... [--verify] REMOTE LOCAL

The same as hostlink cp host:REMOTE LOCAL (see hostlink help cp).
""",
    "df": """\
usage: hostlink [OPTIONS] df PATH

Free space on the host's filesystem that holds PATH (or its nearest existing ancestor); -j: JSON.
""",
    "job": """\
usage: hostlink [OPTIONS] job list
       hostlink [OPTIONS] job status|tail|wait|cancel|rm ID [FLAGS]

Detached jobs, started with hostlink exec -D CMD (which prints the job's id).
  list                  your jobs, newest first
  status ID             state, exit code, timeout, output sizes
  tail ID [-f] [--stderr]
                        its output so far; -f follows it until the job ends
  wait ID [-x]          wait for its end and exit as exec would have (0, 1, 5 on timeout);
                        -x: with the job's own exit status
  cancel ID [--kill]    SIGTERM (or SIGKILL) to the job's process group
  rm ID                 forget a finished job and its output
  -j                    JSON, for list, status, cancel, rm
""",
    "shim": """\
usage: hostlink shim install NAME... [--dir DIR] [--timeout MS]
       hostlink shim list [--dir DIR]
       hostlink shim remove NAME... [--dir DIR]

A shim is a link to this client under a program's name: run as docker, it runs docker on the host
with exactly its arguments (no shell), and exits with its status. Arguments that are existing
paths inside HOSTLINK_PATH_MAP (and -v SRC:DST style pairs whose SRC is) become host paths.
  --dir DIR       where the links go: default this client's directory, or ~/.local/bin when that
                  is not writable
  --timeout MS    kill the program after MS milliseconds (default: no timeout, as a local
                  program has none; HOSTLINK_TIMEOUT_MS applies when the shim has none)
Names that would shadow a shell, python or hostlink itself (sh, bash, env, python3...) are refused.
list shows every shim on PATH and in DIR.
""",
    "help": """\
usage: hostlink help [COMMAND]

The help of hostlink, or of COMMAND (the same as hostlink COMMAND --help).
""",
}
COMMANDS["put-stream"] = COMMANDS["put"]
COMMANDS["get-stream"] = COMMANDS["get"]


def text(command=None):
    """The help text of ``command``, or of hostlink, with the default socket filled in."""
    if command in COMMANDS:
        return COMMANDS[command]
    return USAGE % DEFAULT_SOCKET
