"""``hostlink-install container``: put the client into a running container (docker SDK) and say
whether the socket directory is mounted there, with the exact lines to add when it is not."""

import io
import os
import tarfile
import tempfile
import time

from .. import zipapp
from .host import CONTAINER_SOCKET_DIR


def client_tar(name="hostlink"):
    """A tar archive holding the client zipapp (0755) and a hostlink-cli link to it."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(zipapp.build(os.path.join(tmp, "hostlink")), "rb") as f:
            data = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o755, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("hostlink-cli")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, name, 0o777
        tar.addfile(link)
    return buf.getvalue()


def install_client(container, dest_dir="/usr/local/bin"):
    """Copy the client into ``container`` (a docker SDK Container); returns the path inside."""
    container.exec_run(["mkdir", "-p", dest_dir], user="0")
    if not container.put_archive(dest_dir, client_tar()):
        raise RuntimeError("docker refused to copy the client into %s" % container.name)
    return dest_dir.rstrip("/") + "/hostlink"


def socket_mount(container, host_socket_dir):
    """The mount of the host's socket directory in ``container``, or None."""
    for m in container.attrs.get("Mounts", []):
        if m.get("Destination") == CONTAINER_SOCKET_DIR or m.get("Source") == host_socket_dir:
            return m
    return None


def mount_advice(host_socket_dir, gid, token_hint="$HOSTLINK_TOKEN"):
    """The compose lines and docker run flags that mount the socket directory."""
    return (
        "compose:\n"
        "    volumes:\n      - %s:%s\n"
        "    group_add:\n      - \"%d\"\n"
        "    environment:\n      HOSTLINK_SOCKET: %s/hostlink.sock\n      HOSTLINK_TOKEN: %s\n"
        "docker run:\n"
        "    -v %s:%s --group-add %d -e HOSTLINK_SOCKET=%s/hostlink.sock -e HOSTLINK_TOKEN=%s"
        % (host_socket_dir, CONTAINER_SOCKET_DIR, gid, CONTAINER_SOCKET_DIR, token_hint,
           host_socket_dir, CONTAINER_SOCKET_DIR, gid, CONTAINER_SOCKET_DIR, token_hint))
