"""``hostlink-install sidecar``: render the compose bundle where hostlinkd runs as a container.

The bundle is a directory with ``docker-compose.yml`` (hostlinkd with the host's PID namespace,
client-init filling a workspace volume, an agent service) and the ``hostlink.conf`` (0600) that
the hostlinkd service mounts. The token is kept when the bundle is rendered again.
"""

import os
import secrets
import socket

from .host import Change, existing_token_in
from .render import render

# The socket's group when the host has no hostlink group: any gid works, the agent is given it.
DEFAULT_GID = 990
IMAGES = {"daemon_image": "hostlink/hostlinkd:latest",
          "client_init_image": "hostlink/client-init:latest",
          "agent_image": "hostlink/agent-test:latest"}


def plan(out_dir, namespace_pid=1, project="hostlink", agent_service="agent", agent_user="1000",
         group_gid=0, labels=None, node_name="", **images):
    """The Changes that make the bundle in ``out_dir``."""
    conf_path = os.path.join(os.path.abspath(out_dir), "hostlink.conf")
    compose_path = os.path.join(os.path.abspath(out_dir), "docker-compose.yml")
    token = existing_token_in(conf_path) or secrets.token_hex(32)
    conf = render("installer", "hostlink.conf.j2", node_name=node_name or socket.gethostname(),
                  token=token, shell="/bin/sh", socket="/run/hostlink/hostlink.sock",
                  group_gid=group_gid, max_concurrent=16, default_timeout_ms=30000,
                  max_timeout_ms=86400000, audit_log="/var/log/hostlink/audit.log",
                  log_target="stderr", namespace_pid=namespace_pid, tcp=None, tls_cert="", tls_key="",
                  admin_socket="/run/hostlink-admin/admin.sock", job_spool_dir="", extra_socket="",
                  run_as="")
    values = dict(IMAGES, **{k: v for k, v in images.items() if v})
    compose = render("compose", "sidecar.yml.j2", path=compose_path, project=project, conf=conf_path,
                     token=token, agent_service=agent_service, agent_user=agent_user,
                     group_gid=group_gid, labels=labels or {"hostlink.bundle": project}, **values)
    return [Change(conf_path, conf, 0o600), Change(compose_path, compose, 0o600)]
