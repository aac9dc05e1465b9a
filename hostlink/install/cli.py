"""The ``hostlink-install`` command line (typer): parse, call host/containers, render the report."""

import os
from typing import List, Optional

import typer

from . import host

app = typer.Typer(help="Set up hostlinkd on this host and hostlink in containers.",
                  no_args_is_help=True, add_completion=True)


def _fail(message, code=1):
    typer.secho("hostlink-install: %s" % message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command("host")
def host_cmd(
    workspace: Optional[str] = typer.Option(None, help="agent workspace: gets bin/hostlink and .env"),
    service: Optional[str] = typer.Option(None, help="compose service the override is for (default: the only one in the compose file, else openclaw)"),
    root: str = typer.Option("/", help="put every path under this directory (as DESTDIR does)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show each file as a diff; change nothing"),
    no_start: bool = typer.Option(False, "--no-start", help="write files but do not start hostlinkd"),
    rotate_token: bool = typer.Option(False, "--rotate-token", help="make a new token and reload"),
    openclaw_config: Optional[str] = typer.Option(None, help="set the env in this openclaw.json's env.vars instead of .env"),
    group: str = typer.Option("hostlink", help="group whose members may use the socket"),
    socket_dir: Optional[str] = typer.Option(None, help="socket directory on the host (default ROOT/run/hostlink)"),
    compose_file: Optional[str] = typer.Option(None, help="your compose file (default: docker-compose.yml here): its service, version and group_add are carried over"),
    shell: str = typer.Option("/bin/bash", help="shell that runs command strings"),
    tcp: Optional[str] = typer.Option(None, help="also listen on ADDR:PORT with TLS required (a key and certificate are made)"),
    workspace_mount: Optional[str] = typer.Option(None, help="where the workspace is mounted in the container: writes HOSTLINK_PATH_MAP so the same directory is used on the host"),
    run_as: Optional[str] = typer.Option(None, help="host user that runs the commands (default: the workspace's owner, else the sudo user, else a dedicated 'hostlink' user; root only when asked)"),
):
    """Install hostlinkd on this host, start it, and set up the workspace for an agent.

    An install of the first hostlink found here is taken over: its settings kept, its conf backed up
    beside it, its daemon stopped (uninstall puts it back)."""
    opts = host.Options(root=root, workspace=workspace, service=service, dry_run=dry_run,
                        no_start=no_start, rotate_token=rotate_token, openclaw_config=openclaw_config,
                        group=group, socket_dir=socket_dir, compose_file=compose_file, shell=shell,
                        tcp=tcp, workspace_mount=workspace_mount, run_as=run_as)
    try:
        report, changes = host.install(opts)
        if rotate_token and not dry_run:
            from . import openclaw
            report += openclaw.follow_token(root)
    except (host.InstallError, OSError) as exc:
        _fail(str(exc))
    if dry_run:
        for ch in changes:
            text = ch.diff() if ch.changed else ""
            typer.echo(text if text else "unchanged %s" % ch.path)
    for line in report:
        typer.echo(line)
    if not dry_run:
        from . import compose
        typer.secho("\nhostlink is set up. Next:", bold=True)
        for line in compose.next_steps(opts.compose_file, host.Layout(opts).override, opts.service):
            typer.echo(line)


@app.command()
def uninstall(
    root: str = typer.Option("/", help="the --root of the install"),
    socket_dir: Optional[str] = typer.Option(None, help="the --socket-dir of the install"),
):
    """Stop hostlinkd and remove what 'host' and 'openclaw' installed (the audit log is kept)."""
    from . import openclaw
    try:
        lines, left = openclaw.uninstall(root), None
    except (host.InstallError, OSError) as exc:  # the daemon still goes; then say what was left
        lines, left = [], "hostlink is still in the OpenClaw setup: %s" % exc
    try:
        for line in lines + host.uninstall(host.Options(root=root, socket_dir=socket_dir)):
            typer.echo(line)
    except (host.InstallError, OSError) as exc:
        _fail(str(exc))
    if left:
        _fail(left)


@app.command("openclaw")
def openclaw_cmd(
    home: Optional[str] = typer.Option(None, help="home of the OpenClaw user, holding .openclaw/ (default: the sudo user's, else yours)"),
    workspace: Optional[str] = typer.Option(None, help="the agent workspace (default: agents.defaults.workspace of openclaw.json)"),
    sandbox: Optional[bool] = typer.Option(None, "--sandbox/--no-sandbox", help="set up OpenClaw's Docker sandbox too (default: when openclaw.json turns it on)"),
    root: str = typer.Option("/", help="the --root of the host install"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show each file as a diff; change nothing"),
):
    """After 'host': install the hostlink skill into OpenClaw, for its gateway and its sandbox."""
    from . import openclaw
    opts = openclaw.Options(root=root, home=home, workspace=workspace, sandbox=sandbox, dry_run=dry_run)
    try:
        report, changes = openclaw.install(opts)
    except (host.InstallError, OSError) as exc:
        _fail(str(exc))
    if dry_run:
        for ch in changes:
            typer.echo((ch.diff() if ch.changed else "") or "unchanged %s" % ch.path)
    for line in report:
        typer.echo(line)


@app.command()
def container(
    name: str = typer.Argument(..., help="name or id of a running container"),
    dest: str = typer.Option("/usr/local/bin", help="directory for the client inside the container"),
    root: str = typer.Option("/", help="the --root of the host install"),
    socket_dir: Optional[str] = typer.Option(None, help="the --socket-dir of the host install"),
    group: str = typer.Option("hostlink", help="the socket group"),
    shim: List[str] = typer.Option([], help="also make NAME run the host's NAME (repeatable)"),
):
    """Copy the client into a running container and check that the socket directory is mounted."""
    import docker
    from . import containers
    layout = host.Layout(host.Options(root=root, socket_dir=socket_dir))
    try:
        c = docker.from_env().containers.get(name)
        path = containers.install_client(c, dest)
    except docker.errors.NotFound:
        _fail("no container named %s (docker ps lists the running ones)" % name)
    except docker.errors.DockerException as exc:
        _fail("docker: %s" % exc)
    typer.echo("copied the client to %s:%s (and hostlink-cli beside it)" % (c.name, path))
    if shim:
        code, out = c.exec_run([path, "shim", "install", *shim], user="0")
        if code != 0:
            _fail("shim install in %s failed: %s" % (c.name, out.decode(errors="replace").strip()))
        typer.echo(out.decode(errors="replace").rstrip())
    mount = containers.socket_mount(c, layout.socket_dir)
    if mount:
        typer.echo("ok: %s is mounted at %s" % (mount.get("Source"), mount.get("Destination")))
        return
    gid = host.group_gid(group, create=False)
    typer.secho("the socket directory is not mounted in %s; recreate it with:" % c.name,
                fg=typer.colors.YELLOW)
    typer.echo(containers.mount_advice(layout.socket_dir, max(gid, 0)))
    raise typer.Exit(2)


@app.command()
def sidecar(
    out: str = typer.Option(..., help="directory for docker-compose.yml and hostlink.conf"),
    namespace_pid: int = typer.Option(1, help="host process whose namespaces commands enter"),
    project: str = typer.Option("hostlink", help="compose project name"),
    agent_image: Optional[str] = typer.Option(None, help="image of the agent service"),
    daemon_image: Optional[str] = typer.Option(None, help="image of hostlinkd"),
    client_init_image: Optional[str] = typer.Option(None, help="image that copies the client"),
    label: List[str] = typer.Option([], help="KEY=VALUE label on everything the bundle creates"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the files as diffs; write nothing"),
):
    """Render the sidecar bundle: hostlinkd in a container that enters the host's namespaces."""
    from . import sidecar as sc
    labels = dict(item.split("=", 1) for item in label if "=" in item) or None
    gid = host.group_gid("hostlink", create=False)
    changes = sc.plan(out, namespace_pid=namespace_pid, project=project, labels=labels,
                      group_gid=gid if gid >= 0 else sc.DEFAULT_GID,
                      agent_image=agent_image, daemon_image=daemon_image,
                      client_init_image=client_init_image)
    for ch in changes:
        if dry_run:
            typer.echo(ch.diff() or "unchanged %s" % ch.path)
        elif ch.changed:
            host.write(ch)
            typer.echo("wrote %s" % ch.path)
        else:
            typer.echo("unchanged %s" % ch.path)
    if not dry_run:
        typer.echo("next: docker-compose -f %s -p %s up -d" % (changes[1].path, project))


@app.command("show-target")
def show_target(
    name: Optional[str] = typer.Option(None, help="target name (default: this host's name)"),
    root: str = typer.Option("/", help="the --root of the install"),
    address: Optional[str] = typer.Option(None, help="address clients use (default: tcp_bind)"),
):
    """Print the targets.conf section a remote client needs, with the certificate's fingerprint."""
    from ..daemon import config, tls
    layout = host.Layout(host.Options(root=root))
    try:
        cfg = config.load(layout.conf)
    except config.ConfigError as exc:
        _fail(str(exc))
    if not cfg.tcp_enabled:
        _fail("TCP is off in %s: run hostlink-install host --tcp ADDR:PORT first" % layout.conf)
    lines = ["[%s]" % (name or cfg.node), "transport = tcp", "address = %s" % (address or cfg.tcp_bind),
             "port = %d" % cfg.tcp_port, "token = %s" % cfg.auth_token]
    if cfg.tls == "off":
        lines.append("tls = off")
    else:
        if not os.path.exists(cfg.tls_cert):
            tls.generate(cfg.tls_cert, cfg.tls_key, cfg.node)
        lines.append("tls_fingerprint = %s" % tls.fingerprint(cfg.tls_cert))
    typer.echo("\n".join(lines))


@app.command()
def doctor(
    root: str = typer.Option("/", help="the --root of the install"),
    socket_dir: Optional[str] = typer.Option(None, help="the --socket-dir of the install"),
    fix: bool = typer.Option(False, "--fix", help="make a token file others may read private (0600)"),
):
    """Check the configuration, the socket and the daemon on this host, each with its fix."""
    from ..client import doctor as doc
    from ..client.session import Endpoint
    from ..daemon import config, private
    layout = host.Layout(host.Options(root=root, socket_dir=socket_dir))
    ok = True
    fixed = set()
    while True:
        try:
            cfg = config.load(layout.conf)
            typer.echo("ok   configuration: %s" % layout.conf)
            typer.echo("ok   commands run as: %s" % (cfg.run_as_user or "root (the daemon's own user; "
                                                        "hostlink-install host --run-as USER changes it)"))
            break
        except config.NotPrivate as exc:
            if not fix or exc.path in fixed:
                typer.echo("FAIL configuration: %s" % exc)
                raise typer.Exit(1)
            fixed.add(exc.path)
            typer.echo("fix  %s" % private.make_private(exc.path))
        except config.ConfigError as exc:
            typer.echo("FAIL configuration: %s" % exc)
            raise typer.Exit(1)
    for f in doc.check(Endpoint(socket=cfg.socket, token=cfg.auth_token)):
        typer.echo(f.line())
        ok = ok and f.ok
    ok = _daemon_status(cfg) and ok
    raise typer.Exit(0 if ok else 1)


def _daemon_status(cfg):
    """What the running daemon holds (its admin socket's status), one line; nothing if unreachable.
    False when its audit log is failing (commands are refused or run unrecorded)."""
    import json
    import socket
    if not cfg.admin_socket:
        return True
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(cfg.admin_socket)
            s.sendall(b'{"op": "status"}\n')
            st = json.loads(s.makefile("rb").readline())
    except (OSError, ValueError):
        return True
    c = st.get("connections", {})
    typer.echo("info status: connections %s unauthenticated / %s authenticated / %s closing, "
               "%s commands (%s waiting for a slot), %s jobs, %s approvals waiting, %s descriptors, "
               "%s children%s"
               % (c.get("unauthenticated"), c.get("authenticated"), c.get("closing"),
                  st.get("commands"), st.get("queued"), st.get("jobs"), st.get("approvals"),
                  st.get("descriptors"),
                  st.get("children"), ", AUDIT LOG FAILING: %s" % st["audit_broken"]
                  if st.get("audit_broken") else ""))
    return not st.get("audit_broken")


def main():
    app(prog_name="hostlink-install")
