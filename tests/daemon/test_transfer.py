"""Transfers with a real daemon: trees round-trip byte-identical both ways, on the socket and over
TCP; --verify, --exclude; interrupted transfers leave nothing half-written; tar-slip and symlink
tricks cannot write outside the destination; policy paths are enforced."""

import hashlib
import io
import os
import signal
import subprocess
import tarfile


from tests.conftest import wait_for
from tests.daemon.test_remote import tcp_daemon


def make_tree(root, big=0):
    t = root / "tree"
    (t / "empty").mkdir(parents=True)
    (t / "a" / "b" / "c").mkdir(parents=True)
    (t / "with space.txt").write_text("spaces\n")
    (t / "new\nline").write_text("newline in the name\n")
    (t / "a" / "b" / "c" / "deep.bin").write_bytes(os.urandom(100000))
    os.chmod(t / "a" / "b" / "c" / "deep.bin", 0o640)
    with open(bytes(t) + b"/caf\xe9", "wb") as f:
        f.write(b"latin-1 name")
    (t / "abs-link").symlink_to("/etc/hostname")
    (t / "rel-link").symlink_to("a/b/c/deep.bin")
    (t / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(t / "script.sh", 0o755)
    os.utime(t / "with space.txt", (1000000000, 1000000000))
    if big:
        with open(t / "big.bin", "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(big):
                f.write(block)
    return t


def snapshot(root):
    out = {}
    for base, dirs, files in os.walk(bytes(root)):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, bytes(root))
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", oct(st.st_mode & 0o7777), int(st.st_mtime), digest)
    return out


def test_tree_round_trips_both_ways(daemon, tmp_path):
    src = make_tree(tmp_path / "src", big=200)
    host = tmp_path / "host"
    host.mkdir()
    r = daemon.run("cp", str(src), "host:%s" % host, timeout=300)
    assert r.returncode == 0, r.stderr
    assert snapshot(host / "tree") == snapshot(src)
    back = tmp_path / "back"
    r = daemon.run("get", str(host / "tree"), str(back), timeout=300)
    assert r.returncode == 0, r.stderr
    assert snapshot(back) == snapshot(src)


def test_round_trip_over_tcp(make_daemon, tmp_path):
    d = tcp_daemon(make_daemon, "required")
    src = make_tree(tmp_path / "src")
    flags = ("-a", "127.0.0.1:%d" % d.port, "--fingerprint", d.fingerprint)
    assert d.run(*flags, "put", str(src), str(tmp_path / "up")).returncode == 0
    assert snapshot(tmp_path / "up") == snapshot(src)
    assert d.run(*flags, "get", str(tmp_path / "up"), str(tmp_path / "down")).returncode == 0
    assert snapshot(tmp_path / "down") == snapshot(src)


def test_verify_prints_a_manifest(daemon, tmp_path):
    src = make_tree(tmp_path / "src")
    r = daemon.run("put", "--verify", str(src), str(tmp_path / "v"))
    lines = r.stdout.decode("utf-8", "replace").splitlines()
    assert r.returncode == 0 and r.stderr.startswith(b"5 of 5 files sha256-verified")
    digest = hashlib.sha256((src / "with space.txt").read_bytes()).hexdigest()
    assert "%s  with space.txt" % digest in lines and len(lines) == 5
    assert any(l.startswith("\\") and "new\\nline" in l for l in lines)  # sha256sum's escaping
    check = subprocess.run(["sha256sum", "-c", "--status", "-"], input=r.stdout, cwd=str(src))
    assert check.returncode == 0  # the manifest is sha256sum's own format, relative to the copy
    r = daemon.run("get", "--verify", str(tmp_path / "v"), str(tmp_path / "w"))
    assert r.returncode == 0 and b"5 of 5 files sha256-verified" in r.stderr


def test_exclude(daemon, tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "a" / ".cache").mkdir()
    (src / "a" / ".cache" / "x").write_text("x")
    r = daemon.run("put", "--exclude", ".cache", "--exclude", "a/b", "--exclude", "*.sh", str(src),
                   str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    got = snapshot(tmp_path / "e")
    assert b"a/.cache" not in got and b"a/b" not in got and b"script.sh" not in got
    assert b"with space.txt" in got and b"empty" in got


def test_interrupted_transfer_leaves_no_partial_file(daemon, tmp_path):
    src = tmp_path / "huge.bin"
    with open(src, "wb") as f:
        f.truncate(3 << 30)  # sparse: reading it is fast, the transfer is long
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = daemon.popen("put", str(src), str(dest))
    wait_for(lambda: any(n.startswith(".hostlink-partial-") for n in os.listdir(dest)), 20,
             "the transfer to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: os.listdir(dest) == [], 20, "the partial file to be removed")


def test_tar_slip_refused(daemon, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("ok.txt", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    r = daemon.run("cp", "-", "host:%s" % dest, input=buf.getvalue())
    assert r.returncode != 0 and b"leaves the destination" in r.stderr
    assert not (tmp_path / "escaped.txt").exists()


def test_symlink_in_destination_is_never_followed(daemon, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    (dest / "tree").mkdir(parents=True)
    (dest / "tree" / "d").symlink_to(outside)  # as a tree holding d -> /etc would
    src = tmp_path / "src" / "tree"
    (src / "d").mkdir(parents=True)
    (src / "d" / "passwd").write_text("owned\n")
    r = daemon.run("put", str(src), str(dest))
    assert r.returncode != 0 and b"a symlink is never followed" in r.stderr
    assert os.listdir(outside) == []


def test_policy_paths(make_daemon, tmp_path):
    allowed = tmp_path / "srv"
    allowed.mkdir()
    d = make_daemon("[client boxed]\ntoken = boxed-token-0123456789\ncwd_allow = %s\nallow_shell = true\n"
                    % allowed)
    tok = ("-k", "boxed-token-0123456789")
    r = d.run(*tok, "get", "/etc/shadow", str(tmp_path / "shadow"))
    assert r.returncode == 6 and b"may not transfer /etc/shadow" in r.stderr
    assert not (tmp_path / "shadow").exists()
    (tmp_path / "f").write_text("x")
    assert d.run(*tok, "put", str(tmp_path / "f"), "/etc/hostlink-test-file").returncode == 6
    assert d.run(*tok, "put", str(tmp_path / "f"), str(allowed / "f")).returncode == 0


def test_df(daemon):
    r = daemon.run("df", "/tmp/does/not/exist/yet")
    assert r.returncode == 0 and r.stdout.split(b" ")[0].isdigit()
    assert b"at /tmp, the nearest existing ancestor of /tmp/does/not/exist/yet" in r.stdout


def test_single_file_put_is_copied_by_the_kernel_with_its_metadata(daemon, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 << 20))
    os.chmod(src, 0o640)
    os.utime(src, (1200000000, 1200000000))
    into = tmp_path / "into"
    into.mkdir()
    r = daemon.run("put", "--verify", str(src), str(into))
    assert r.returncode == 0 and b"1 of 1 files sha256-verified" in r.stderr, r.stderr
    got = into / "model.bin"
    assert got.read_bytes() == src.read_bytes()
    assert (got.stat().st_mode & 0o777, int(got.stat().st_mtime)) == (0o640, 1200000000)
    assert hashlib.sha256(src.read_bytes()).hexdigest() in r.stdout.decode()
    r = daemon.run("put", str(src), str(tmp_path / "new" / "dir" / "renamed.bin"), "--mkdir", "--mode", "600")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new/dir/renamed.bin").stat().st_mode & 0o777 == 0o600
    assert [n for n in os.listdir(into) if n.startswith(".hostlink-partial-")] == []


def test_single_file_get_is_copied_by_the_kernel_with_its_metadata(daemon, tmp_path):
    src = tmp_path / "host.bin"
    src.write_bytes(os.urandom(2 << 20))
    os.chmod(src, 0o604)
    os.utime(src, (1300000000, 1300000000))
    into = tmp_path / "into"
    into.mkdir()
    r = daemon.run("get", "--verify", str(src), str(into))
    assert r.returncode == 0 and b"1 of 1 files sha256-verified" in r.stderr, r.stderr
    got = into / "host.bin"
    assert got.read_bytes() == src.read_bytes()
    assert (got.stat().st_mode & 0o777, int(got.stat().st_mtime)) == (0o604, 1300000000)
    assert os.listdir(into) == ["host.bin"]
    r = daemon.run("get", str(tmp_path / "missing"), str(into))
    assert (r.returncode, r.stderr) == (1, b"hostlink: %s does not exist on the host\n"
                                        % bytes(tmp_path / "missing"))


def test_get_that_does_not_fit_is_refused_before_anything_moves(daemon, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        src = make_tree(tmp_path / "src", big=2)
        for args in ((), ("--exclude", "nothing-matches")):  # the socket's fast path, and tar
            r = daemon.run("get", *args, str(src), str(small / "copy"))
            assert r.returncode == 1 and b"do not fit in %s" % bytes(small) in r.stderr, r.stderr
            assert os.listdir(small) == []
        r = daemon.run("get", "--exclude", "big.bin", str(src), str(small / "copy"))
        assert r.returncode == 0, r.stderr  # what is left out does not count
        r = daemon.run("get", str(src / "big.bin"), str(small / "one.bin"))
        assert r.returncode == 1 and os.listdir(small) == ["copy"]
    finally:
        subprocess.run(["umount", str(small)], check=True)
