"""The first hostlink's own test suites (tests/test_regressions.sh, tests/test_integration.sh),
built from its source, run against hostlinkd: with its own C client (as users baked it into
their images) and with ours under the name hostlink-cli. No assertion may fail beyond the
differences references/compat.md documents, and those that fail against its own daemon here."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Its assertions that hostlink fails on purpose, each a row of references/compat.md.
DOCUMENTED = {
    "test_regressions.sh": {
        "both": {
            # its 8 KiB command limit: hostlink takes 128 KiB
            "9KB command -> 125 (rejected, not truncated)", "oversize msg",
            "oversized command produces no output at all",
            # its path length limit: hostlink writes a deep path where it belongs
            "path limit", "truncated write",
            # its sweep reads the age of its own status file
            "gc",
            # two df calls agree only while nothing else writes to the disk
            "and reports that filesystem's free space",
        },
        "ours": {
            # tar streams: symlinks kept, empty directories made
            "symlink", "symlink dir", "skip report", "empty dir",
            # a per-file line of put --stream; next_offset in -j job tail
            "each file reports its own sha256 (an implicit manifest)", "next_offset",
        },
    },
    "test_integration.sh": {"both": set(), "ours": set()},
}
# Its assertions that time the machine (a ping, a small get, an exec under 200 ms while a 50 MiB
# get runs; a timeout under 1.5 s): on a loaded machine they fail for any daemon.
TIMED = {"test_concurrent_ping_fast", "test_concurrent_small_get_fast", "test_concurrent_exec_fast",
         "timeout stops promptly", "timeout escalation"}


def results(suite, text):
    """{assertion: passed} from a run's output."""
    pattern = r"(PASS|FAIL)\x1b\[0m  (.*)$" if "regressions" in suite else r"^(PASS|FAIL): (\S+)"
    out = {}
    for line in text.splitlines():
        m = re.search(pattern, line)
        if m:
            out[key(m.group(2))] = m.group(1) == "PASS"
    return out


def key(name):
    """An assertion's name without what varies from run to run ("... (812ms, ...)")."""
    return re.sub(r" \(.*", "", name.strip())


def run_suite(first_hostlink, tmp, suite, client, daemon):
    """Run ``suite`` from a tree whose build/ holds ``client`` and ``daemon``; {assertion: passed}."""
    tree = tmp / ("%s-%s" % (suite, client.name))
    (tree / "build").mkdir(parents=True)
    shutil.copytree(str(first_hostlink / "tests"), str(tree / "tests"))
    shutil.copy(str(client), str(tree / "build/hostlink-cli"))
    shutil.copy(str(daemon), str(tree / "build/hostlinkd"))
    args = "tests/%s /bin/bash %s" % (suite, tree) if "regressions" in suite else "tests/" + suite
    # umask 077: hostlinkd refuses a conf that others may read, and the suites write theirs.
    r = subprocess.run(["bash", "-c", "umask 077; exec bash %s" % args], cwd=str(tree),
                       capture_output=True, text=True, timeout=900)
    got = results(suite, r.stdout)
    assert got and "FATAL" not in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    return got


@pytest.fixture(scope="module")
def baseline(first_hostlink, tmp_path_factory):
    """Each suite against the first hostlink itself, here: what fails there is not ours."""
    tmp = tmp_path_factory.mktemp("baseline")
    build = first_hostlink / "build"
    return {s: run_suite(first_hostlink, tmp, s, build / "hostlink-cli", build / "hostlinkd")
            for s in DOCUMENTED}


@pytest.fixture(scope="module")
def hostlinkd_shim(tmp_path_factory):
    """build/hostlinkd for its suites: starts this checkout's hostlinkd with their flags."""
    path = tmp_path_factory.mktemp("shim") / "hostlinkd"
    path.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s -m hostlink.daemon \"$@\"\n" % (ROOT, sys.executable))
    os.chmod(path, 0o755)
    return path


@pytest.mark.parametrize("suite", sorted(DOCUMENTED))
@pytest.mark.parametrize("which", ["its", "ours"])
def test_its_suite_against_hostlinkd(first_hostlink, baseline, hostlinkd_shim, client_app, tmp_path,
                                     suite, which):
    if which == "its":
        client = first_hostlink / "build/hostlink-cli"
    else:
        client = tmp_path / "hostlink-cli"  # the name decides: its codes and answers
        shutil.copy(client_app, str(client))
    got = run_suite(first_hostlink, tmp_path / "1", suite, client, hostlinkd_shim)
    allowed = DOCUMENTED[suite]["both"] | (DOCUMENTED[suite]["ours"] if which == "ours" else set())
    allowed = {key(n) for n in allowed | TIMED} | {n for n, ok in baseline[suite].items() if not ok}
    failed = sorted(name for name, ok in got.items() if not ok)
    if set(failed) - allowed:
        # Its suite sleeps and times jobs: under load one can miss. A difference fails twice.
        print("%s with %s client, failed once: %s" % (suite, which, set(failed) - allowed))
        again = run_suite(first_hostlink, tmp_path / "2", suite, client, hostlinkd_shim)
        failed = sorted(set(failed) & {n for n, ok in again.items() if not ok})
    # Its assertions are named one way when they pass and another when they fail: count them.
    assert len(got) == len(baseline[suite]), "its suite ran %d assertions against hostlinkd, %d " \
        "against itself" % (len(got), len(baseline[suite]))
    assert not set(failed) - allowed, "beyond the documented differences: %s" % (set(failed) - allowed)
    print("%s with %s client: %d passed, %d failed (documented or failing against itself here: %s)"
          % (suite, which, len(got) - len(failed), len(failed), ", ".join(failed)))
