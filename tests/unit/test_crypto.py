"""The vault that seals credentials (pure, real AES-256-GCM)."""

from __future__ import annotations

import base64

import pytest

from switchboard.config import Settings
from switchboard.crypto import PREFIX, SealError, Vault, key_id, new_master_key, parse_key
from switchboard.errors import ConfigError


def test_a_sealed_value_opens_only_in_its_place_and_with_its_key() -> None:
    key = parse_key("K", new_master_key())
    vault = Vault(key)
    sealed = vault.seal_json({"token": "abc"}, "destinations.config:d1")
    assert isinstance(sealed, str) and sealed.startswith(PREFIX + key_id(key))
    assert "abc" not in sealed
    assert vault.open_json(sealed, "destinations.config:d1") == {"token": "abc"}
    with pytest.raises(SealError, match="damaged or was moved"):
        vault.open_json(sealed, "destinations.config:d2")  # copied into another row
    other = Vault(parse_key("K", new_master_key()))
    with pytest.raises(SealError, match="not configured"):
        other.open_json(sealed, "destinations.config:d1")
    assert vault.seal_json({"token": "abc"}, "p") != vault.seal_json({"token": "abc"}, "p")


def test_without_a_key_values_pass_in_clear_and_clear_values_always_read() -> None:
    vault = Vault(None)
    assert vault.seal_json(["s"], "p") == ["s"]
    assert Vault(parse_key("K", new_master_key())).open_json(["s"], "p") == ["s"]


def test_reseal_moves_a_value_to_the_current_key() -> None:
    old, new = parse_key("K", new_master_key()), parse_key("K", new_master_key())
    sealed = Vault(old).seal_json(["s"], "p")
    rotating = Vault(new, [old])
    fresh = rotating.reseal(sealed, "p")
    assert fresh is not None and Vault(new).open_json(fresh, "p") == ["s"]
    assert rotating.reseal(fresh, "p") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [("not base64!", "is not base64"), (base64.b64encode(b"short").decode(), "32 bytes")],
)
def test_a_bad_master_key_names_its_variable(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"SWITCHBOARD_MASTER_KEY.*{problem}"):
        Vault.from_settings(Settings(master_key=text))


def test_the_key_file_is_read_and_a_missing_one_is_named(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "master.key"
    key = new_master_key()
    path.write_text(key + "\n")
    assert Vault.from_settings(Settings(master_key_file=str(path))).current_id == key_id(
        base64.b64decode(key)
    )
    with pytest.raises(ConfigError, match="SWITCHBOARD_MASTER_KEY_FILE: cannot read"):
        Vault.from_settings(Settings(master_key_file=str(path) + ".gone"))
