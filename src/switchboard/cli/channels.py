"""Hub commands for a WhatsApp gateway destination's channel: `channels create`, `status`, `qr`
(drawn in the terminal, or written as a PNG) and `webhook`. The hub calls the gateway
(`api/gateway_channels.py`); these commands only call the hub."""

from __future__ import annotations

import asyncio
import base64
import binascii
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from switchboard.channels.wpp_gateway import PNG_MAGIC, qr_terminal
from switchboard.cli.common import (
    Hub,
    JsonOpt,
    KeyOpt,
    UrlOpt,
    describe_error,
    err,
    fail,
    out,
    print_json,
    table,
)

channels_app = typer.Typer(
    help="A WhatsApp gateway destination's channel (provider gateway): create it on the "
    "gateway, see whether it is connected, scan its QR code, point its webhook at a source.",
    no_args_is_help=True,
)

DestinationArg = Annotated[
    str,
    typer.Argument(help="The whatsapp destination (provider gateway): its name or id."),
]


def _path(destination: str, tail: str = "") -> str:
    return f"/v1/destinations/{quote(destination, safe='')}/channel{tail}"


def _show(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    status = answer["status"]
    if status == "unknown" and answer.get("gateway_status"):
        status = f"unknown ({answer['gateway_status']})"
    row = [answer["destination"], answer["channel"], status, answer.get("phone") or ""]
    out.print(table(["destination", "channel", "status", "phone"], [row]))


@channels_app.command("create")
def channels_create(
    destination: DestinationArg,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Create the channel on the destination's gateway (kept if it exists); then `channels qr`."""
    hub = Hub(url, api_key)
    status, answer = asyncio.run(hub.call("POST", _path(destination)))
    if status not in (200, 201):
        fail(f"{destination}: {describe_error(status, answer)}")
    if not as_json:
        err.print("created on the gateway" if status == 201 else "the gateway already had it")
    _show(answer, as_json)


@channels_app.command("status")
def channels_status(
    destination: DestinationArg,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Whether the channel is connected, as its gateway says now."""
    _show(Hub(url, api_key).request("GET", _path(destination), what=destination), as_json)


@channels_app.command("qr")
def channels_qr(
    destination: DestinationArg,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Write the QR code to this PNG file, not the terminal."),
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """The channel's QR code to scan in WhatsApp: in the terminal, or a PNG with --png."""
    answer = Hub(url, api_key).request("GET", _path(destination, "/qr"), what=destination)
    if as_json:
        print_json(answer)
    if png is not None:
        try:
            image = base64.b64decode(answer["png"].partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            fail("the hub's PNG is not valid base64")
        if not image.startswith(PNG_MAGIC):
            fail("the hub's answer holds no PNG")
        png.write_bytes(image)
        err.print(f"wrote the QR code of {answer['channel']} to {png} ({len(image)} bytes)")
        return
    if as_json:
        return
    if not answer.get("qr"):
        fail("the gateway gave only an image of the code: write it with --png FILE")
    print(qr_terminal(answer["qr"]), end="", flush=True)
    err.print(
        f"scan it in WhatsApp on the phone of {answer['channel']}: "
        "Settings → Linked devices → Link a device"
    )


@channels_app.command("webhook")
def channels_webhook(
    destination: DestinationArg,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="The source (name or id, preset wpp_gateway, the gateway's secret among its "
            "secrets) the gateway is to post message, message.ack and connection.update to.",
        ),
    ],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Point the channel's webhook at a source's receiving URL on the hub."""
    answer = Hub(url, api_key).request(
        "POST", _path(destination, "/webhook"), {"source": source}, what=destination
    )
    if as_json:
        print_json(answer)
        return
    out.print(f"{answer['channel']} posts {', '.join(answer['events'])} to {answer['url']}")
