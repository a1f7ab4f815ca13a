"""Steps the compose rig runs inside the fedspace image, as ``python -m scenarios.container``.

They live apart from the compose file's generator (``scenarios.compose``) because they run
in the containers, not on the host: ``init`` (test CA, certificates and each domain's
cross-domain OIDC settings, reusing the rig's code so both rigs behave alike), ``database``
(wait for PostgreSQL, create the domain's database) and ``probe`` (the health check, also
the Dockerfile's ``HEALTHCHECK``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import ssl
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from fedspace.cliutil import fail
from scenarios.rig_machine import DEFAULT_DOMAINS, RigError, check_domains

CERTS = "/certs"  # the shared volume: CA, per-domain certificates and settings

DomainOption = Annotated[list[str] | None, typer.Option(
    "--domain", "-d", help="a domain of the rig (repeatable); default zurich.test, paris.test")]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    secret = getattr(value, "get_secret_value", None)  # SecretStr: the file needs the value
    return json.dumps(str(secret() if secret else value))  # JSON escapes are valid TOML


def discovery_toml(config: dict[str, Any]) -> str:
    """The ``[discovery]`` table of a settings file; lists of models become arrays of tables."""
    lines, tables = ["[discovery]"], []
    for key, value in config.items():
        if isinstance(value, list) and value and hasattr(value[0], "model_dump"):
            tables += [(key, v) for v in value]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, model in tables:
        lines += ["", f"[[discovery.{key}]]", *(f"{k} = {_toml_value(getattr(model, k))}"
                                               for k in model.model_dump(exclude_none=True))]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


def write_init(out: Path, domains: list[str]) -> None:
    """CA, per-domain leaf (``D.pem``/``D-key.pem``) and settings (``D.toml``) in ``out``;
    valid files are kept (``TestCA``), so re-running ``init`` never breaks trust."""
    from scenarios.ca import TestCA
    from scenarios.rig_seed import discovery_config

    domains = check_domains(domains)
    ca = TestCA(out)
    secret_file = out / "rig-secret"  # the OIDC client secrets derive from it
    if not secret_file.exists():
        _write_private(secret_file, secrets.token_hex(32))
    secret = secret_file.read_text().strip().encode()
    urls = {d: (f"https://cloud.{d}", f"https://idp.{d}") for d in domains}
    for d in domains:
        ca.leaf(d, [f"cloud.{d}", f"idp.{d}", d])
        _write_private(out / f"{d}.toml", discovery_toml(discovery_config(d, urls, secret)))


async def ensure_database(url: str, wait: float = 0.0) -> bool:
    """Wait up to ``wait`` s for the PostgreSQL server of ``url``, then create its database
    when missing (so a domain added later gets one too). True when it was created."""
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    name = target.database or ""
    if not re.fullmatch(r"[A-Za-z0-9_]{1,63}", name):
        raise ValueError(f"unsupported database name {name!r}")
    admin = target.set(drivername="postgresql", database="postgres")
    deadline = time.monotonic() + wait
    while True:
        try:
            conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
            break
        except (OSError, asyncpg.PostgresError) as exc:  # refused, starting up, no DNS yet
            if time.monotonic() >= deadline:
                raise ConnectionError(f"PostgreSQL at {target.host}:{target.port or 5432} "
                                      f"not reachable: {exc}") from None
            await asyncio.sleep(1)
    try:
        for attempt in range(20):
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return False
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                return True
            except asyncpg.ObjectInUseError:  # template1 busy (autovacuum): try again
                if attempt == 19:
                    raise
                await asyncio.sleep(0.25)
            except asyncpg.DuplicateDatabaseError:  # another process was faster
                return False
        return False
    finally:
        await conn.close()


def probe_target(path: str) -> tuple[str, ssl.SSLContext, str | None]:
    """(URL, trust, TLS name): this instance's ``path`` on loopback per its settings; with
    TLS verified as its public host against ``outbound.ca_file`` (a real check, no bypass)."""
    from fedspace.settings import load_settings

    settings, context = load_settings(), ssl.create_default_context()
    http, listen_all = settings.http, {"", "0.0.0.0", "::"}  # noqa: S104 (a set, not a bind)
    host = "127.0.0.1" if http.host in listen_all else http.host
    host = f"[{host}]" if ":" in host else host
    if not http.tls_cert_file:
        return f"http://{host}:{http.port}{path}", context, None
    if settings.outbound.ca_file:
        context.load_verify_locations(cafile=str(settings.outbound.ca_file))
    return f"https://{host}:{http.port}{path}", context, urlsplit(settings.public_url).hostname


# -- commands -----------------------------------------------------------------------------

cli = typer.Typer(help="Container-side steps of the compose rig.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@cli.command("init")
def init_cmd(domain: DomainOption = None,
             out: Annotated[Path, typer.Option(help="folder (the certs volume)")] = Path(CERTS),
             ) -> None:
    """Create the test CA, each domain's certificate and its OIDC settings (idempotent)."""
    try:
        write_init(out, domain or list(DEFAULT_DOMAINS))
    except (RigError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"CA, certificates and settings ready in {out}")


@cli.command("database")
def database_cmd(url: str, wait: Annotated[float, typer.Option(help="seconds")] = 0.0) -> None:
    """Wait for the PostgreSQL server of URL and create the database if missing."""
    import asyncpg

    try:
        created = asyncio.run(ensure_database(url, wait))
    except (ConnectionError, ValueError, asyncpg.PostgresError) as exc:
        fail(str(exc))
    typer.echo(f"database {url.rsplit('/', 1)[-1]} {'created' if created else 'present'}")


@cli.command("probe")
def probe_cmd(path: Annotated[str, typer.Option(help="/healthz: alive; /readyz: ready")]
              = "/healthz") -> None:
    """Health check of the instance configured here: exit 0 when it answers 2xx."""
    import httpx

    target, context, sni = probe_target(path)
    try:
        with httpx.Client(verify=context, timeout=4) as client:
            response = client.get(target, extensions={"sni_hostname": sni} if sni else {})
    except httpx.HTTPError as exc:
        fail(f"{target}: {exc}")
    if not response.is_success:
        fail(f"{target}: HTTP {response.status_code} {response.text[:200]}")


if __name__ == "__main__":
    cli()
