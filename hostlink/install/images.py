"""Build the bundle's images (images/*/Dockerfile) with the docker SDK, making the base first
when no registry can provide it."""

import os
import subprocess

from .render import bundle_dir

BASE_IMAGE = "python:3.11-slim-bookworm"
NAMES = ("hostlinkd", "client-init", "agent")
REPOSITORIES = {"hostlinkd": "hostlink/hostlinkd", "client-init": "hostlink/client-init",
                "agent": "hostlink/agent-test"}


def ensure_base(client, image=BASE_IMAGE):
    """Make sure the base image exists: images/make-base.sh creates it locally when missing."""
    import docker
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        subprocess.run([os.path.join(bundle_dir("images"), "make-base.sh"), image], check=True,
                       timeout=900)


def build(client, tag="latest", names=NAMES, labels=None):
    """Build each image from the package's own sources; returns {name: image tag}."""
    context = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ensure_base(client)
    out = {}
    for name in names:
        ref = "%s:%s" % (REPOSITORIES[name], tag)
        dockerfile = os.path.join(bundle_dir("images"), name, "Dockerfile")
        client.images.build(path=context, dockerfile=dockerfile, tag=ref, rm=True,
                            labels=labels or {})
        out[name] = ref
    return out
