"""TLS for TCP listeners: the daemon's key and self-signed certificate, and their fingerprint.

Clients pin the certificate's SHA-256 fingerprint (``tls_fingerprint = sha256:...`` in
targets.conf), as ssh pins a host key, so no certificate authority is involved. The key and
certificate are made with ``cryptography`` where it is installed, else with the ``openssl`` tool.
"""

import hashlib
import os
import ssl
import subprocess


class TLSError(Exception):
    """The key or certificate cannot be made or loaded."""


def fingerprint_of_der(der):
    return "sha256:" + hashlib.sha256(der).hexdigest()


def fingerprint(cert_path):
    """``sha256:<hex>`` of the certificate at ``cert_path``."""
    with open(cert_path, encoding="ascii") as f:
        return fingerprint_of_der(ssl.PEM_cert_to_DER_cert(f.read()))


def generate(cert_path, key_path, common_name):
    """Write a new P-256 key (0600) and a self-signed certificate valid for ten years."""
    os.makedirs(os.path.dirname(cert_path) or ".", exist_ok=True)
    old = os.umask(0o077)
    try:
        try:
            _generate_cryptography(cert_path, key_path, common_name)
        except ImportError:
            r = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-days", "3650", "-subj", "/CN=%s" % common_name, "-keyout", key_path,
                 "-out", cert_path], capture_output=True, text=True)
            if r.returncode != 0:
                raise TLSError("cannot make a TLS key: install python3-cryptography or openssl (%s)"
                               % r.stderr.strip()[:200])
    except FileNotFoundError:
        raise TLSError("cannot make a TLS key: install python3-cryptography or openssl") from None
    finally:
        os.umask(old)
    os.chmod(key_path, 0o600)
    os.chmod(cert_path, 0o644)


def _generate_cryptography(cert_path, key_path, common_name):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert_path, key_path, common_name):
    """A TLS 1.2+ server context; the key and certificate are made first when missing."""
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        generate(cert_path, key_path, common_name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError("cannot load %s / %s: %s" % (cert_path, key_path, exc)) from None
    return ctx
