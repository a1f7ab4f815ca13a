"""Helpers every CLI command shares: the --config option, clear one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from fedspace.db import Database
from fedspace.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also FEDSPACE_CONFIG)",
                 envvar="FEDSPACE_CONFIG"),
]
_err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    _err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except FileNotFoundError as exc:
        fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        fail(f"invalid settings: {problems}")
    except ValueError as exc:  # e.g. TOML syntax
        fail(f"invalid settings: {exc}")


async def open_database(config: Path | None) -> Database:
    """The instance's database, migrated to the newest schema."""
    db = Database(settings_from(config).database_url)
    await db.migrate()
    return db
