"""TLS to a daemon on TCP, pinned by certificate fingerprint as ssh pins host keys."""

import hashlib
import socket
import ssl

from .errors import ConnectFailed


def wrap(ep, raw):
    """``raw`` (a connected TCP socket) in TLS, the daemon's certificate checked against the pin."""
    if not ep.fingerprint:
        raw.close()
        raise ConnectFailed(
            "target %s (%s) has no tls_fingerprint: run 'hostlink-install show-target' on that host "
            "and put its tls_fingerprint line in targets.conf (or tls = off for a WireGuard-only "
            "address)" % (ep.name or "-a", ep.where))
    sock = socket.socket(fileno=raw.detach())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check, as ssh's known_hosts is
    tls_sock = ctx.wrap_socket(sock)
    seen = "sha256:" + hashlib.sha256(tls_sock.getpeercert(binary_form=True)).hexdigest()
    want = ep.fingerprint.lower().replace(":", "").replace("sha256", "sha256:", 1)
    if seen != want:
        tls_sock.close()
        raise ConnectFailed(
            "TLS fingerprint mismatch for %s: expected %s, the daemon has %s; if its certificate was "
            "remade, update tls_fingerprint in targets.conf (hostlink-install show-target on that "
            "host prints it), otherwise something is in the middle" % (ep.where, ep.fingerprint, seen))
    return tls_sock


def reader(sock, size_max):
    """recv for a non-blocking TLS socket that returns all it can, up to ``size`` bytes: one
    TLS read yields one record (16 KiB), and feeding the parser record by record cost more
    than the decryption."""
    again = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
    whole = memoryview(bytearray(size_max))  # reused: what is read goes out as a bytes copy

    def read(size):
        view = whole[:size]
        n = sock.recv_into(view)  # raises when nothing is there yet: the caller polls
        while n and n < size:
            try:
                got = sock.recv_into(view[n:])
            except again:
                break
            if not got:
                break  # the end of the stream: the next read returns b""
            n += got
        return bytes(view[:n])
    return read, again
