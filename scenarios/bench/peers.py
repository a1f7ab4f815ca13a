"""The peers fedspace is measured against, and the tools that drive them.

wsgidav (with cheroot, its default server) comes from PyPI into a virtualenv of its own
under the bench cache, never into fedspace's environment. nginx (``nginx-light``), wrk and
curl come from Debian: found on PATH, else installed with apt-get when running as root,
else a one-line error saying what to install.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from scenarios.bench.harness import Session, shell
from scenarios.bench.model import BenchError
from scenarios.bench.procs import Server, free_port, run

DEBIAN_PACKAGES = {"wrk": "wrk", "nginx": "nginx-light", "curl": "curl", "taskset": "util-linux"}
WSGIDAV_PACKAGES = ("wsgidav", "cheroot")
USER = "bench"


def tool(name: str) -> str:
    """The path of a Debian-packaged tool, installing its package when we may."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    package = DEBIAN_PACKAGES[name]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "install", "-y", "-qq", package], timeout=600, env=env)
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if found:
            return found
    raise BenchError(f"{name} is missing: install it with `sudo apt-get install {package}`")


def basic(user: str, password: str) -> str:
    """The value of an ``Authorization`` header for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class Peer:
    """A running peer server: where it serves the data tree and how to authenticate."""

    name: str  # with its version, as reported
    base: str  # URL of the data tree's root, no trailing slash
    auth: str  # Authorization header value
    server: Server


def wsgidav_python(session: Session) -> Path:
    """The Python of the peers' virtualenv, created (and wsgidav installed) on first use."""
    venv = session.cache / "peers-venv"
    python = venv / "bin" / "python"
    probe = "import wsgidav, cheroot"
    try:
        run([str(python), "-c", probe], timeout=60)
    except BenchError:
        session.say(f"installing {', '.join(WSGIDAV_PACKAGES)} into {venv} …")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)], timeout=120)
        run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             *WSGIDAV_PACKAGES], timeout=600)
    return python


def versions(python: Path) -> dict[str, str]:
    """Installed versions of wsgidav and cheroot in the peers' virtualenv."""
    code = ("import json, importlib.metadata as m; "
            f"print(json.dumps({{p: m.version(p) for p in {list(WSGIDAV_PACKAGES)!r}}}))")
    return dict(json.loads(run([str(python), "-c", code], timeout=60)))


def start_wsgidav(session: Session, root: Path, password: str, probe: str) -> Peer:
    """wsgidav serving ``root`` read-write on loopback with Basic auth, on the server core;
    ready when the file ``probe`` answers."""
    python = wsgidav_python(session)
    version = versions(python)
    home = session.dir("wsgidav")
    port = free_port()
    config = {
        "host": "127.0.0.1", "port": port, "server": "cheroot",
        "provider_mapping": {"/": str(root)},
        "http_authenticator": {"accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {USER: {"password": password}}}},
        "verbose": 1,  # warnings only: request logging would measure the terminal
        "dir_browser": {"enable": False},
    }
    (home / "wsgidav.json").write_text(json.dumps(config, indent=2))
    argv = session.pin([str(python.parent / "wsgidav"), "--config", str(home / "wsgidav.json")],
                       "server")
    session.servers["wsgidav"] = shell(argv)
    server = Server("wsgidav", argv, home / "wsgidav.log")
    session.stack.callback(server.stop)
    auth = basic(USER, password)
    base = f"http://127.0.0.1:{port}"
    server.wait_http(f"{base}/{probe}", headers={"Authorization": auth}, timeout=60)
    return Peer(f"wsgidav {version['wsgidav']} (cheroot {version['cheroot']})", base, auth,
                server)


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        auth_basic "fedspace bench";
        auth_basic_user_file {home}/htpasswd;
    }}
}}
"""


def start_nginx(session: Session, root: Path, password: str, probe: str) -> Peer:
    """nginx serving ``root`` (GET only, sendfile) with Basic auth, one worker, server core;
    ready when the file ``probe`` answers."""
    binary = tool("nginx")
    home = session.dir("nginx")
    port = free_port()
    (home / "htpasswd").write_text(f"{USER}:{{PLAIN}}{password}\n")
    user = "user root;\n" if os.geteuid() == 0 else ""  # the data tree is private to us
    conf = home / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, home=home, port=port, root=root))
    argv = session.pin([binary, "-p", str(home), "-e", str(home / "error.log"), "-c", str(conf)],
                       "server")
    session.servers["nginx"] = shell(argv)
    server = Server("nginx", argv, home / "nginx.log")
    session.stack.callback(server.stop)
    auth = basic(USER, password)
    base = f"http://127.0.0.1:{port}"
    server.wait_http(f"{base}/{probe}", headers={"Authorization": auth}, timeout=30)
    match = re.search(r"nginx/(\S+)", run([binary, "-v"], timeout=30, merge_stderr=True))
    return Peer(f"nginx {match.group(1) if match else '?'}", base, auth, server)
