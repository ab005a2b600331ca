"""``relaygate keys``: create, list and revoke virtual keys.

Results go to standard output (``create`` prints the new key alone on one line, so
``KEY=$(relaygate keys create --tenant acme)`` works); messages go to standard error.
``create`` refuses a tenant that neither the config nor the database knows unless
``--new-tenant`` is given: a mistyped tenant would otherwise get a key outside its budget and
policy. Exit codes: ``relaygate.cli.common``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from relaygate.cli.common import ConfigPathOption, DbOption, cli_actor, open_store, resolve_config, stderr
from relaygate.config.regions import check_region
from relaygate.ledger.key_store import KeyStore

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke virtual keys.", no_args_is_help=True, add_completion=False)


def _key_store(
    db: str | None, config: Path | None, *, create: bool = False
) -> AbstractContextManager[KeyStore]:
    return open_store(db, KeyStore, config, create=create)


@app.command()
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant name, from the config or the database")],
    region: Annotated[
        str | None,
        typer.Option("--region", help="region whose law applies to the tenant: ISO 3166-1 alpha-2, EU, EEA"),
    ] = None,
    new_tenant: Annotated[
        bool, typer.Option("--new-tenant", help="create the tenant in the database if nothing knows it")
    ] = False,
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Create a key for a tenant and print it once; only its hash is stored."""
    try:
        region = check_region(region)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--region'") from None
    cfg = resolve_config(config)
    configured = set(cfg.tenants) if cfg is not None else set()
    with _key_store(db, config, create=True) as store:
        if tenant not in configured and not new_tenant:
            known = configured | {t.name for t in store.list_tenants()}
            if tenant not in known:
                names = escape(", ".join(sorted(known)) or "none")
                where = "" if cfg is not None else "; no config given"
                stderr().print(
                    f"[red]error:[/red] unknown tenant {escape(repr(tenant))} (known: {names}{where}); "
                    "check the spelling, or pass --new-tenant to create it",
                    soft_wrap=True,
                )
                raise typer.Exit(2)
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
