"""The compose side of ``hostlink-install host``: which service of the user's compose file gets
hostlink, the override that gives it the socket directory, the client on PATH and the token as a
file, and the commands that bring it up, printed as they will run.

The token reaches the container as a read-only file (HOSTLINK_TOKEN_FILE), never as an
environment variable that ``docker inspect`` shows: it sits in a 0700 directory on the host, mode
0440 and group the socket's, so in the container whoever has the socket's group (group_add) reads
it. The override itself then holds no secret and is readable by whoever runs docker-compose.
"""

import os

from .render import render

CONTAINER_SOCKET_DIR = "/run/hostlink"
CONTAINER_CLIENT = "/usr/local/bin/hostlink"  # on PATH in every image we know
CONTAINER_TOKEN = "/run/secrets/hostlink_token"
DEFAULT_SERVICE = "openclaw"
NAMES = ("docker-compose.yml", "docker-compose.yaml")  # what docker-compose reads by itself


class ComposeError(ValueError):
    """The compose file or the service cannot be used; the message says what to do."""


def find_file(given, cwd):
    """The compose file: the one given, else docker-compose.yml in ``cwd``, else None."""
    if given:
        path = os.path.abspath(given)
        if not os.path.isfile(path):
            raise ComposeError("--compose-file %s: no such file" % given)
        return path
    return next((os.path.join(cwd, n) for n in NAMES if os.path.isfile(os.path.join(cwd, n))), None)


def _load(path):
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ComposeError("cannot read %s as YAML: %s" % (path, str(exc).splitlines()[0]))
    if not isinstance(data, dict) or not isinstance(data.get("services") or {}, dict):
        raise ComposeError("%s is not a compose file (no services: mapping)" % path)
    return data


def pick_service(path, asked):
    """The service of ``path`` hostlink is for: ``asked``, else the only one there is."""
    if not path:
        return asked or DEFAULT_SERVICE
    names = list(_load(path).get("services") or {})
    if asked:
        if asked not in names:
            raise ComposeError("--service %s is not in %s (its services: %s)"
                               % (asked, path, ", ".join(names) or "none"))
        return asked
    if len(names) == 1:
        return names[0]
    if not names:
        raise ComposeError("%s has no services" % path)
    raise ComposeError("%s has several services (%s): name the one your agent runs in with "
                       "--service NAME" % (path, ", ".join(names)))


def base_groups(compose_file, service):
    """The service's group_add in the user's compose file: the legacy tool replaces, not merges."""
    if not compose_file:
        return []
    svc = (_load(compose_file).get("services") or {}).get(service) or {}
    return [str(g) for g in svc.get("group_add") or []]


def compose_version(compose_file):
    """The compose file version to write: the base file's (the legacy tool wants them equal)."""
    if compose_file:
        version = _load(compose_file).get("version")
        if version:
            return str(version)
    return "2.4"


def override(opts, layout, gid):
    """The text of the override for ``opts.service``."""
    groups = list(dict.fromkeys(base_groups(opts.compose_file, opts.service) + [str(max(gid, 0))]))
    volumes = ["%s:%s" % (layout.socket_dir, CONTAINER_SOCKET_DIR),
               "%s:%s:ro" % (layout.client, CONTAINER_CLIENT),
               "%s:%s:ro" % (layout.token_file, CONTAINER_TOKEN)]
    env = {"HOSTLINK_SOCKET": CONTAINER_SOCKET_DIR + "/" + os.path.basename(layout.socket),
           "HOSTLINK_TOKEN_FILE": CONTAINER_TOKEN}
    if opts.workspace and opts.workspace_mount:
        mount = opts.workspace_mount.rstrip("/")
        volumes.append("%s:%s" % (opts.workspace, mount))
        env["HOSTLINK_PATH_MAP"] = "%s=%s" % (mount, opts.workspace)
    return render("compose", "override.yml.j2", service=opts.service, path=layout.override,
                  compose_file=opts.compose_file or "docker-compose.yml",
                  version=compose_version(opts.compose_file), volumes=volumes, env=env, groups=groups)


def next_steps(compose_file, override_path, service):
    """The commands that bring the service up with hostlink, as they will run."""
    files = "-f %s -f %s" % (compose_file or "docker-compose.yml", override_path)
    lines = ["  docker-compose %s up -d" % files,  # -T: works from a script as from a terminal
             "  docker-compose %s exec -T %s hostlink ping" % (files, service)]
    if not compose_file:
        lines.append("  (no compose file given: this override is for a service named %s; "
                     "--compose-file FILE picks the service from your file)" % service)
    return lines


def write_token(change, gid):
    """Write the token file in place, 0440 root:``gid`` in a 0700 directory. In place: containers
    mount the file itself, and a new file would leave them the old token until recreated."""
    folder = os.path.dirname(change.path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    fd = os.open(change.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o400)
    with os.fdopen(fd, "wb") as f:
        os.fchown(f.fileno(), 0, max(gid, 0))
        os.fchmod(f.fileno(), change.mode)
        f.write(change.content)
