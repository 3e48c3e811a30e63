"""`switchboard crypto`: the master key that seals credentials at rest (a database command)."""

from __future__ import annotations

import typer

from switchboard.cli.common import DB_HELP, err, with_store
from switchboard.config import Settings
from switchboard.crypto import new_master_key
from switchboard.store import Store
from switchboard.store.sealed import Rotation, rotate

crypto_app = typer.Typer(
    help=f"The master key that seals destination and source credentials at rest. {DB_HELP}",
    short_help="Master key: create one, rotate to a new one.",
    no_args_is_help=True,
)


@crypto_app.command("new-key")
def new_key() -> None:
    """Print a new random master key (base64 of 32 bytes) for SWITCHBOARD_MASTER_KEY or a
    key file; it is not stored anywhere, so keep it."""
    print(new_master_key())


@crypto_app.command("rotate-master", epilog=DB_HELP)
def rotate_master() -> None:
    """Re-seal every credential under SWITCHBOARD_MASTER_KEY (credentials still in clear are
    sealed too). Run it once every hub reads with the new key and lists the old one in
    SWITCHBOARD_MASTER_KEY_PREVIOUS: nothing stops, and the old key can be dropped after."""

    async def run(store: Store, s: Settings) -> Rotation:
        return await rotate(store)

    done = with_store(run)
    err.print(
        f"re-sealed {done.resealed} values under key {_current_id()}; {done.unchanged} already "
        f"were; {done.skipped} changed meanwhile (their writer sealed them)"
    )


def _current_id() -> str:
    from switchboard.cli.common import settings
    from switchboard.crypto import Vault

    return Vault.from_settings(settings()).current_id or "-"
