"""``relaygate keys``: create, list and revoke virtual keys.

Results go to standard output (``create`` prints the new key alone on one line, so
``KEY=$(relaygate keys create --tenant acme)`` works); messages go to standard error.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.common import ConfigPathOption, DbOption, cli_actor, open_store, stderr
from relaygate.ledger.key_store import KeyStore

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke virtual keys.", no_args_is_help=True, add_completion=False)


def _key_store(db: str | None, config: Path | None) -> AbstractContextManager[KeyStore]:
    return open_store(db, KeyStore, config)


@app.command()
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant name (created if new)")],
    region: Annotated[
        str | None, typer.Option("--region", help="region whose law applies to the tenant, e.g. EU, US, CN")
    ] = None,
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Create a key for a tenant and print it once; only its hash is stored."""
    with _key_store(db, config) as store:
        try:
            key_id, plaintext = store.create_key(tenant, region, actor=cli_actor())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--tenant'") from None
    typer.echo(plaintext)
    where = f" (region {region})" if region else ""
    stderr().print(
        f"created {key_id} for tenant {tenant}{where}. The key above is shown only once: store it now.",
        soft_wrap=True,
    )


@app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant's keys")] = None,
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """List keys (id, tenant, region, first characters, created, revoked); never the key itself."""
    with _key_store(db, config) as store:
        records = store.list_keys(tenant)
    if not records:
        stderr().print("no keys" + (f" for tenant {tenant}" if tenant else ""))
        return
    table = Table("key id", "tenant", "region", "key starts", "created (UTC)", "status")
    for record in records:
        status = "active" if record.revoked_at is None else f"revoked {_when(record.revoked_at)}"
        table.add_row(
            record.key_id,
            record.tenant,
            record.region or "-",
            record.key_prefix + "...",
            _when(record.created_at),
            status,
        )
    Console(highlight=False).print(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="key id as shown by `keys list`, e.g. key_ab12cd34")],
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Revoke a key. Gateways stop accepting it within seconds (their lookup cache TTL)."""
    with _key_store(db, config) as store:
        revoked = store.revoke(key_id, actor=cli_actor())
    if not revoked:
        stderr().print(f"[red]no active key {key_id}[/red] (unknown or already revoked)")
        raise typer.Exit(1)
    stderr().print(f"revoked {key_id}")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")
