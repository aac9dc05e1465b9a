"""The client's hand-written option parser, its JSON writer and its Python 3.8 compatibility."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from hostlink import zipapp
from hostlink.client import main as cli
from hostlink.client.output import dumps
from hostlink.client.errors import UsageError
from hostlink.wire import launcher


def parse(*args):
    opts = cli.Options()
    rest = cli.parse(list(args), opts)
    return opts, rest


def test_options_before_command():
    opts, rest = parse("-s", "/x.sock", "-k", "t", "-T60000", "-e", "A=1", "--env=B=2", "-jx", "exec", "ls")
    assert (opts.socket, opts.token, opts.timeout, opts.env) == ("/x.sock", "t", "60000", ["A=1", "B=2"])
    assert opts.json and opts.exit_status and rest == ["exec", "ls"]


def test_exec_options_then_command_words():
    opts = cli.Options()
    words = cli.parse(["-w", "/tmp", "ls", "-la"], opts, cli.EXEC_OPTIONS)
    assert opts.workdir == "/tmp" and words == ["ls", "-la"]
    words = cli.parse(["-la"], cli.Options(), cli.EXEC_OPTIONS)
    assert words == ["-la"]


def test_near_miss_distance():
    from hostlink.client.help import distance, nearest
    assert [distance(a, b) for a, b in (("exce", "exec"), ("exec", "exec"), ("pnig", "ping"),
                                        ("", "ab"), ("kitten", "sitting"))] == [1, 0, 1, 2, 3]
    assert nearest("exce", ["exec", "ping", "job"]) == ["exec"]
    assert nearest("x", ["exec", "ping"]) == []  # one letter is no near miss of anything
    assert nearest("frobnicate", ["exec", "ping"]) == []


@pytest.mark.parametrize("args", [["--nope"], ["-k"], ["--json=1"]])
def test_bad_options(args):
    with pytest.raises(UsageError):
        parse(*args)


def test_client_modules_run_on_python_38():
    root = os.path.dirname(os.path.dirname(os.path.dirname(cli.__file__)))
    paths = [os.path.join(root, m) for m in zipapp.modules()]
    r = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips", "--violations", "-t=3.8-",
                        *paths], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("args", [["--version"], ["exec", "true"]])
def test_client_imports_stay_light(client_app, args):
    # The hot path must not pull in modules that cost milliseconds at start (bench/ has figures).
    env = {"PATH": os.environ["PATH"], "HOSTLINK_SOCKET": "/nonexistent.sock", "HOSTLINK_TOKEN": "x"}
    # Exactly what the file's own header runs, plus -X importtime.
    r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", launcher.BOOTSTRAP,
                        client_app, *args], capture_output=True, text=True, env=env)
    loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "hostlink.client.main" in loaded
    heavy = {"re", "json", "socket", "enum", "argparse", "getopt", "gettext", "selectors"}
    if args == ["--version"]:
        heavy.add("os")  # -S leaves os unloaded; the client uses posix (the exec case fails and explains)
    # Help, near misses, progress and shims load only when asked for.
    heavy |= {"hostlink.client." + m for m in ("help", "usage", "progress", "shims", "shimrun",
                                               "pathmap", "transfer", "tarpipe")}
    assert not heavy & loaded, sorted(heavy & loaded)


_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_plain)
def test_json_output_is_what_json_dumps_writes(value):
    # -j prints without importing json (output.dumps); the bytes must be json's, whatever the value.
    assert dumps(value) == json.dumps(value, separators=(",", ":"))
