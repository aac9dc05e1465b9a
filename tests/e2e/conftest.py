"""End-to-end fixtures: a real Docker engine, the project's images, labelled containers.

Everything the suite creates carries the label ``hostlink.e2e=<session id>``; the session ends
by removing what is left and checking that nothing with that label remains.
"""

import uuid

import docker
import pytest

from hostlink.install import images as images_mod

SESSION = uuid.uuid4().hex[:12]
LABEL = {"hostlink.e2e": SESSION}


@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine; a missing engine fails the suite (scripts/test installs and starts one)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail("no Docker engine (%s): run scripts/test, which installs and starts dockerd" % exc)
    yield client
    _cleanup(client)


def _cleanup(client):
    flt = {"label": "hostlink.e2e=%s" % SESSION}
    for c in client.containers.list(all=True, filters=flt):
        c.remove(force=True)
    for n in client.networks.list(filters=flt):
        n.remove()
    for v in client.volumes.list(filters=flt):
        v.remove(force=True)
    left = (client.containers.list(all=True, filters=flt) + client.networks.list(filters=flt)
            + client.volumes.list(filters=flt))
    assert not left, "left behind: %s" % left


@pytest.fixture(scope="session")
def images(docker_client):
    """The project's images, built from this checkout (the base made locally when missing)."""
    built = images_mod.build(docker_client, tag="e2e", labels={"hostlink.e2e.image": "1"})
    return {"hostlinkd": built["hostlinkd"], "client-init": built["client-init"], "agent": built["agent"]}
