"""The gateway channel setup's pure parts: reading the gateway's answers, the status vocabulary
(the same as the `wpp-gateway` mapping's), channel ids fit for a URL path, and QR drawing."""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path

import pytest
import yaml

from switchboard.channels.wpp_gateway import (
    PNG_MAGIC,
    PNG_SCALE,
    QR_TEXT_LIMIT,
    STATUS_WORDS,
    ChannelState,
    GatewayProblem,
    check_channel_id,
    parse_channels,
    parse_qr,
    qr_png,
    qr_terminal,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mapping", ["wpp-gateway", "wpp-gateway-leads"])
def test_status_words_are_the_mappings_table(mapping: str) -> None:
    doc = yaml.safe_load((ROOT / "mappings" / mapping / "1.yaml").read_text("utf-8"))
    (rule,) = [r for r in doc["rules"] if r["type"] == "whatsapp.connection_updated"]
    table = re.search(r"`(\{.*\})`", rule["data"]["status"], re.S)
    assert table is not None
    assert yaml.safe_load(table[1]) == STATUS_WORDS


def test_channel_lists_in_the_shapes_gateways_answer() -> None:
    expected = [
        ChannelState("a", "connected", phone="5547930001111"),
        ChannelState("b", "qr_required"),
    ]
    items = [
        {"id": "a", "status": "CONNECTED", "phone": "5547930001111"},
        {"id": "b", "status": "qr"},
    ]
    assert parse_channels({"success": True, "channels": items}) == expected
    assert parse_channels({"data": items}) == expected
    assert parse_channels(items) == expected
    assert parse_channels([{"session": "a", "state": "inChat", "number": 5547930001111}]) == [
        ChannelState("a", "connected", phone="5547930001111")
    ]
    assert parse_channels([{"channel": "a", "connected": False}]) == [
        ChannelState("a", "disconnected")
    ]
    assert parse_channels(["a"]) == [ChannelState("a", "unknown")]
    # a word we do not know is kept (short) for the answer; items without an id are skipped
    assert parse_channels([{"id": "a", "status": "SYNCING"}, {"status": "x"}, 7]) == [
        ChannelState("a", "unknown", raw_status="SYNCING")
    ]
    with pytest.raises(GatewayProblem) as info:
        parse_channels({"channels": "a,b"})
    assert info.value.kind == "malformed"


def test_a_qr_answer_gives_the_text_and_the_gateways_image() -> None:
    png = qr_png("2@abc")
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    code = parse_qr({"status": "qr", "qr": "2@abc", "qrcode": url})
    assert (code.status, code.text, code.png) == ("qr_required", "2@abc", png)
    assert code.image() == png  # drawn from the text
    only_image = parse_qr({"data": {"qrcode": url}})
    assert (only_image.status, only_image.text, only_image.image()) == ("qr_required", None, png)
    assert parse_qr({"urlcode": "2@x"}).text == "2@x"
    connected = parse_qr({"status": "connected"})
    assert (connected.status, connected.image()) == ("connected", None)


@pytest.mark.security
@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ({"qr": "2@" + "A" * QR_TEXT_LIMIT}, "too_large"),
        ({"qrcode": "data:image/svg+xml;base64,PHN2Zy8+"}, "malformed"),
        ({"qrcode": "data:image/png;base64,not base64!"}, "malformed"),
        ({"qrcode": "data:image/png;base64," + base64.b64encode(b"GIF89a").decode()}, "malformed"),
        (["2@abc"], "malformed"),
    ],
)
def test_a_hostile_qr_answer_is_refused(answer: object, kind: str) -> None:
    with pytest.raises(GatewayProblem) as info:
        parse_qr(answer)
    assert info.value.kind == kind


@pytest.mark.security
@pytest.mark.parametrize("channel", ["", ".", "..", "a/b", "a?b", "a%2Fb", "a b", "x" * 101, 42])
def test_a_channel_id_that_would_change_the_gateways_path_is_refused(channel: object) -> None:
    assert check_channel_id(channel) is not None


def test_channel_ids_as_tenants_name_them_are_fine() -> None:
    for channel in ("tenant-042", "clinica_7", "5547930001111@c.us", "a.b:c", "..a"):
        assert check_channel_id(channel) is None, channel


def test_the_qr_is_never_a_micro_qr() -> None:
    """Phones' WhatsApp reads only full QR codes; segno picks a Micro QR for short texts."""
    png = qr_png("2@a")
    assert png.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width == height == (21 + 2 * 4) * PNG_SCALE  # version 1 (21 modules) + quiet zone
    lines = qr_terminal("2@a").splitlines()
    assert len(lines) == (21 + 2 * 4 + 1) // 2  # two rows of modules per line
    assert {len(line) for line in lines} == {21 + 2 * 4}
