"""Database commands: `catalog`, `tenants` and `keys` open SWITCHBOARD_DATABASE_URL directly,
so an operator can set up a hub before it runs (and mint the first admin key)."""

from __future__ import annotations

import getpass
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard import catalog as cat
from switchboard.auth import check_constraints, mint_key
from switchboard.cli.common import (
    DB_HELP,
    JsonOpt,
    err,
    fail,
    out,
    print_rows,
    settings,
    short_time,
    shown_url,
    table,
    with_store,
)
from switchboard.cli.server import load_catalog
from switchboard.codegen_cli import catalog_codegen
from switchboard.config import Settings
from switchboard.envelope import format_us, new_id, now_us
from switchboard.errors import SwitchboardError
from switchboard.registry import SHARED, Registry
from switchboard.store import ApiKey, Store, Tenant

catalog_app = typer.Typer(
    help=f"Apply, lint and document event catalogs. `apply` {DB_HELP[0].lower()}{DB_HELP[1:]}",
    short_help="Apply, lint and document event catalogs.",
    no_args_is_help=True,
)
tenants_app = typer.Typer(
    help=f"Create and list tenants. {DB_HELP}",
    short_help="Create and list tenants.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help=f"Create, list and revoke API keys. {DB_HELP}",
    short_help="Create, list and revoke API keys.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str | None, typer.Option(help="The tenant's id (see `tenants list`).")]


@dataclass
class _Noted:
    """What a database command's audit entry says it did (`after`), or that it did nothing."""

    after: Any = None
    changed: bool = True


@asynccontextmanager
async def _audited(
    store: Store, tenant: str | None, action: str, command: str
) -> AsyncIterator[_Noted]:
    """Make a change with a database command in the block, and its audit log entry in the same
    transaction: the operator at the machine, not an API key (`key_id` is `cli`, the user name
    the OS gives, no address)."""
    from switchboard.audit import mask_document
    from switchboard.store.audit import AuditEntry, audited

    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = None
    noted = _Noted()
    async with audited(store) as change:
        yield noted
        if noted.changed:
            change.entry = AuditEntry(
                id=new_id(),
                tenant_id=tenant or "",
                at_us=now_us(),
                key_id="cli",
                key_name=user,
                ip=None,
                action=action,
                method="CLI",
                path=f"switchboard {command}",
                status=0,
                before=None,
                after=mask_document(noted.after),
            )


async def _tenant_exists(store: Store, tenant: str | None) -> None:
    if tenant is not None and await store.get_tenant(tenant) is None:
        raise SwitchboardError(f"no tenant {tenant!r}")


@catalog_app.command("apply", epilog=DB_HELP)
def catalog_apply(
    directory: Annotated[Path, typer.Argument(help="A catalog folder (with catalog.yaml).")],
    tenant: Annotated[
        str | None, typer.Option(help="Apply to this tenant; default: the shared catalog.")
    ] = None,
) -> None:
    """Apply a catalog folder (checked for compatibility with what is stored)."""

    async def run(store: Store, _: Settings) -> dict[str, Any]:
        await _tenant_exists(store, tenant)
        command = f"catalog apply {directory}"
        async with _audited(store, tenant, "event-types.apply", command) as noted:
            report = await Registry(store).apply(tenant or SHARED, load_catalog(directory))
            noted.after = report
        return report

    report = with_store(run)
    out.print(
        f"applied catalog [bold]{report['catalog']}[/bold]: {report['types']} types"
        + (f", indexed {', '.join(report['indexed'])}" if report["indexed"] else "")
    )


@catalog_app.command("lint")
def catalog_lint(
    directories: Annotated[list[Path], typer.Argument(help="Catalog folders to check.")],
) -> None:
    """Check names against the naming convention and validate every example (no database)."""
    errors = 0
    for directory in directories:
        spec = load_catalog(directory)
        problems = cat.lint(spec)
        for p in problems:
            colour = "red" if p.severity == "error" else "yellow"
            out.print(f"[{colour}]{p.severity}[/{colour}] {spec.name} {p.type}: {p.message}")
        errors += sum(p.severity == "error" for p in problems)
        out.print(f"{spec.name}: {len(spec.types)} types, {len(problems)} problems")
    raise typer.Exit(1 if errors else 0)


@catalog_app.command("docs")
def catalog_docs(
    directory: Annotated[Path, typer.Argument(help="A catalog folder (with catalog.yaml).")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder the Markdown files are written to.")
    ] = Path("docs/catalog"),
) -> None:
    """Write the catalog as readable Markdown (no database)."""
    spec = load_catalog(directory)
    files = cat.render_docs(spec)
    for name, text in files.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    out.print(f"wrote {len(files)} files to {out_dir}")


catalog_app.command("codegen")(catalog_codegen)


@tenants_app.command("create", epilog=DB_HELP)
def tenants_create(
    tenant_id: Annotated[str, typer.Argument(help="Lowercase letters, digits, - and _.")],
    name: Annotated[str | None, typer.Option(help="A display name; default: the id.")] = None,
    unknown_types: Annotated[
        str,
        typer.Option(help="Events whose type is not in the catalog: reject or accept."),
    ] = "reject",
) -> None:
    """Create a tenant."""
    from switchboard.api.common import TENANT_ID_RE

    if not TENANT_ID_RE.match(tenant_id):
        fail(f"tenant id {tenant_id!r}: lowercase letters, digits, - and _", 2)
    if unknown_types not in ("reject", "accept"):
        fail(f"--unknown-types {unknown_types!r}: reject or accept", 2)

    async def run(store: Store, _: Settings) -> Tenant:
        command = f"tenants create {tenant_id}"
        async with _audited(store, None, "tenants.create", command) as noted:
            created = await store.create_tenant(
                Tenant(tenant_id, name or tenant_id, unknown_types, now_us())
            )
            noted.after = {"id": created.id, "name": created.name, "unknown_types": unknown_types}
        return created

    with_store(run)
    out.print(f"created tenant {tenant_id}")


@tenants_app.command("list", epilog=DB_HELP)
def tenants_list(as_json: JsonOpt = False) -> None:
    """List tenants."""

    async def run(store: Store, _: Settings) -> list[Tenant]:
        return await store.list_tenants()

    tenants = with_store(run)
    if as_json:
        print_rows(
            {
                "id": t.id,
                "name": t.name,
                "unknown_types": t.unknown_types,
                "created_at": format_us(t.created_us),
            }
            for t in tenants
        )
        return
    rows = [[t.id, t.name, t.unknown_types, short_time(format_us(t.created_us))] for t in tenants]
    out.print(table(["id", "name", "unknown types", "created"], rows))


@keys_app.command("create", epilog=DB_HELP)
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="The key's tenant.")] = None,
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated scopes: ingest, read, manage, pii (unmasked personal data)."
        ),
    ] = "ingest",
    name: Annotated[str, typer.Option(help="A label to tell keys apart.")] = "key",
    source: Annotated[
        str | None, typer.Option(help="The `source` of events sent with this key.")
    ] = None,
    admin: Annotated[bool, typer.Option(help="An admin key (no tenant, every scope).")] = False,
    constraints: Annotated[
        str | None,
        typer.Option(
            help="A filter pattern as JSON that limits the key inside its tenant: every event "
            'it sends must match, every read is narrowed, e.g. \'{"context": {"clinic_id": '
            '["c-17"]}}\'.'
        ),
    ] = None,
) -> None:
    """Create an API key; the key is printed once (last line) and stored only hashed."""
    if admin == (tenant is not None):
        fail("give either --tenant or --admin", 2)
    try:
        limits = None if constraints is None else check_constraints(json.loads(constraints))
        secret, record = mint_key(
            tenant, name, ["admin"] if admin else scopes.split(","), source, limits
        )
    except ValueError as exc:  # json.JSONDecodeError is one too
        fail(
            f"--constraints: {exc}" if constraints and "constraints" not in str(exc) else str(exc),
            2,
        )

    async def run(store: Store, _: Settings) -> None:
        await _tenant_exists(store, tenant)
        async with _audited(store, tenant, "keys.create", "keys create") as noted:
            await store.create_key(record)
            noted.after = record.public()

    with_store(run)
    err.print(f"key id {record.id} ({', '.join(record.scopes)}); shown once:")
    print(secret)


def _key_json(k: ApiKey) -> dict[str, Any]:
    return k.public()


@keys_app.command("list", epilog=DB_HELP)
def keys_list(tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """List keys (their first characters only; a key is never shown again)."""

    async def run(store: Store, _: Settings) -> list[ApiKey]:
        await _tenant_exists(store, tenant)
        return await store.list_keys(tenant)

    keys = with_store(run)
    if as_json:
        print_rows(_key_json(k) for k in keys)
        return
    rows = [
        [
            k.id,
            k.tenant_id or "(admin)",
            k.name,
            k.prefix + "…",
            ",".join(k.scopes),
            "revoked" if k.revoked_us else "active",
        ]
        for k in keys
    ]
    out.print(table(["id", "tenant", "name", "prefix", "scopes", "state"], rows))


@keys_app.command("revoke", epilog=DB_HELP)
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")],
    tenant: TenantOpt = None,
) -> None:
    """Revoke a key (effective on every node within 5 seconds)."""

    async def run(store: Store, _: Settings) -> bool:
        owner = next((k.tenant_id for k in await store.list_keys(tenant) if k.id == key_id), None)
        async with _audited(store, owner, "keys.delete", f"keys revoke {key_id}") as noted:
            revoked = await store.revoke_key(tenant, key_id, now_us())
            noted.after, noted.changed = {"id": key_id}, revoked
        return revoked

    if not with_store(run):
        where = shown_url(settings().database_url)
        fail(
            f"no active key {key_id!r}"
            + (f" of tenant {tenant!r}" if tenant else "")
            + f" in {where} — set SWITCHBOARD_DATABASE_URL to use another database"
        )
    out.print(f"revoked {key_id}")
