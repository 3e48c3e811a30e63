"""WhatsApp through Meta's official Cloud API (``kind: whatsapp_cloud``).

One Graph API call per delivery: ``POST {base_url}/{api_version}/{phone_number_id}/messages``
with ``Authorization: Bearer <secrets[0]>`` (the access token, a destination secret) and a body
``{"messaging_product": "whatsapp", "to", "type", …}``. ``config.message`` picks the form:

- ``text`` (default): ``config.template`` is the body.
- ``template``: an approved message template, ``config.wa_template`` =
  ``{name, language, components: [{type: header|body|button, sub_type?, index?, parameters:
  [Jinja2 strings]}]}``; a quick-reply button's parameter is sent as its payload.
- ``buttons``: interactive reply buttons, ``config.buttons`` = 1 to 3 ``{id, text}`` templates,
  with ``config.template`` as the body.
- ``list``: an interactive list, ``config.list`` = ``{button, sections: [{title, rows: [{id,
  title, description?}]}]}`` (at most 10 rows), with ``config.template`` as the body.
- ``media``: ``config.media`` = ``{type: image|video|audio|document, url, filename?}``, sent by
  link; ``config.template``, if set, is the caption.

The answer's ``messages[0].id`` (a ``wamid.…``) becomes ``SendResult.provider_id``; the status
webhooks of the ``whatsapp-cloud`` mapping find the delivery by it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from msgspec.structs import replace

from switchboard import engagement, templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult
from switchboard.channels.fields import (
    check_path,
    check_template,
    lookup,
    render_field,
    template_failure,
)
from switchboard.channels.webhook import check_url, post
from switchboard.channels.whatsapp import (
    TEXT_LIMIT,
    PhoneProblem,
    normalize_phone,
)

GRAPH_URL = "https://graph.facebook.com"
API_VERSION = "v21.0"
MESSAGES = ("text", "template", "buttons", "list", "media")
MEDIA_TYPES = ("image", "video", "audio", "document")
COMPONENT_TYPES = ("header", "body", "button")
MAX_BUTTONS = 3
MAX_ROWS = 10  # WhatsApp's limit for all the rows of a list together
MAX_PARAMETERS = 20
BUTTON_TITLE = 20  # characters WhatsApp shows of a reply button or a list's button
ROW_TITLE = 24
ROW_DESCRIPTION = 72
CAPTION_LIMIT = 1024

_VERSION_RE = re.compile(r"v\d{1,3}\.\d{1,3}")
_NAME_RE = re.compile(r"[a-z0-9_]{1,512}")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")


def _within(prefix: str, field: str, problems: list[str]) -> list[str]:
    """Problems of a nested object's template, renamed from config.<field> to <prefix>.<field>."""
    return [p.replace(f"config.{field}", f"{prefix}.{field}", 1) for p in problems]


def _templates(
    obj: Any, prefix: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> list[str]:
    """Problems with the templates of a nested object, each named by its path."""
    if not isinstance(obj, dict):
        fields = ", ".join(required or optional)
        return [f"{prefix}: must be an object with {fields}"]
    problems: list[str] = []
    for key in required:
        problems += _within(prefix, key, check_template(obj, key, required=True))
    for key in optional:
        problems += _within(prefix, key, check_template(obj, key))
    return problems


def _check_wa_template(spec: Any) -> list[str]:
    where = "config.wa_template"
    if not isinstance(spec, dict):
        return [f"{where}: required for message 'template', an object with name and language"]
    problems: list[str] = []
    if not isinstance(spec.get("name"), str) or not _NAME_RE.fullmatch(spec["name"]):
        problems.append(f"{where}.name: the approved template's name (lowercase, digits, _)")
    if not isinstance(spec.get("language"), str) or not _LANGUAGE_RE.fullmatch(spec["language"]):
        problems.append(f"{where}.language: a language code such as pt_BR or en")
    components = spec.get("components", [])
    if not isinstance(components, list) or len(components) > 10:
        return [*problems, f"{where}.components: must be a list of at most 10 components"]
    for i, comp in enumerate(components):
        at = f"{where}.components[{i}]"
        if not isinstance(comp, dict):
            problems.append(f"{at}: must be an object with type and parameters")
            continue
        if comp.get("type") not in COMPONENT_TYPES:
            problems.append(f"{at}.type: must be one of {', '.join(COMPONENT_TYPES)}")
        if comp.get("type") == "button":
            if comp.get("sub_type") not in ("quick_reply", "url"):
                problems.append(f"{at}.sub_type: must be quick_reply or url for a button")
            index = comp.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 9:
                problems.append(f"{at}.index: the button's position, 0 to 9")
        params = comp.get("parameters")
        if not isinstance(params, list) or not 1 <= len(params) <= MAX_PARAMETERS:
            problems.append(f"{at}.parameters: a list of 1 to {MAX_PARAMETERS} Jinja2 strings")
            continue
        for j, param in enumerate(params):
            problems += [
                p.replace("config.value", f"{at}.parameters[{j}]", 1)
                for p in check_template({"value": param}, "value", required=True)
            ]
    return problems


def _check_list(spec: Any) -> list[str]:
    where = "config.list"
    if not isinstance(spec, dict):
        return [f"{where}: required for message 'list', an object with button and sections"]
    problems = _within(where, "button", check_template(spec, "button", required=True))
    sections = spec.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= MAX_ROWS:
        return [*problems, f"{where}.sections: a list of 1 to {MAX_ROWS} sections"]
    rows = 0
    for i, section in enumerate(sections):
        at = f"{where}.sections[{i}]"
        if not isinstance(section, dict):
            problems.append(f"{at}: must be an object with title and rows")
            continue
        problems += _templates(section, at, (), ("title",))
        if not isinstance(section.get("rows"), list) or not section["rows"]:
            problems.append(f"{at}.rows: a non-empty list of {{id, title, description?}}")
            continue
        for j, row in enumerate(section["rows"]):
            rows += 1
            problems += _templates(row, f"{at}.rows[{j}]", ("id", "title"), ("description",))
    if rows > MAX_ROWS:
        problems.append(f"{where}.sections: at most {MAX_ROWS} rows in all, got {rows}")
    return problems


def _check_media(spec: Any) -> list[str]:
    where = "config.media"
    if not isinstance(spec, dict):
        return [f"{where}: required for message 'media', an object with type and url"]
    problems: list[str] = []
    if spec.get("type") not in MEDIA_TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(MEDIA_TYPES)}")
    return problems + _templates(spec, where, ("url",), ("filename",))


def _check_buttons(buttons: Any) -> list[str]:
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        return [f"config.buttons: required for message 'buttons', 1 to {MAX_BUTTONS} {{id, text}}"]
    problems: list[str] = []
    for i, button in enumerate(buttons):
        problems += _templates(button, f"config.buttons[{i}]", ("id", "text"))
    return problems


def _rendered(obj: dict[str, Any], key: str, event: dict[str, Any], at: str, limit: int) -> str:
    """A nested template rendered and trimmed to `limit`; TemplateProblem names `at`."""
    try:
        value = render_field(obj, key, event).strip()[:limit]
    except templates.TemplateProblem as exc:
        raise templates.TemplateProblem(
            str(exc).replace(f"config.{key}", f"{at}.{key}", 1)
        ) from exc
    if not value:
        raise templates.TemplateProblem(f"{at}.{key}: rendered empty")
    return value


class WhatsAppCloudChannel:
    kind = "whatsapp_cloud"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        problems += engagement.parse_tracking(config.get("tracking"), email=False)[1]
        if "base_url" in config:
            problems += check_url(config.get("base_url"), "base_url")
        version = config.get("api_version", API_VERSION)
        if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
            problems.append("config.api_version: a Graph API version such as v21.0")
        number = config.get("phone_number_id")
        if not isinstance(number, str) or not number.isascii() or not number.isdigit():
            problems.append("config.phone_number_id: required, the sending number's id (digits)")
        elif len(number) > 30:
            problems.append("config.phone_number_id: at most 30 digits")
        problems += check_path(config, "to", "to_path")
        if config.get("to") not in (None, ""):
            try:
                normalize_phone(config["to"], config.get("default_country"))
            except PhoneProblem as exc:
                problems.append(f"config.to: {exc}")
        country = config.get("default_country")
        if country is not None and not (isinstance(country, str) and country.isdigit()):
            problems.append("config.default_country: must be a calling code such as '55'")
        message = config.get("message", "text")
        if message not in MESSAGES:
            return [*problems, f"config.message: must be one of {', '.join(MESSAGES)}"]
        problems += check_template(
            config, "template", required=message in ("text", "buttons", "list")
        )
        if message == "template":
            problems += _check_wa_template(config.get("wa_template"))
        elif message == "buttons":
            problems += _check_buttons(config.get("buttons"))
        elif message == "list":
            problems += _check_list(config.get("list"))
        elif message == "media":
            problems += _check_media(config.get("media"))
        return problems

    def _payload(self, config: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        """The message object after ``to`` (``type`` and its part); raises TemplateProblem."""
        message = config.get("message", "text")
        body = ""
        if config.get("template") is not None:
            body = render_field(config, "template", event).strip()
        if message in ("text", "buttons", "list") and not body:
            raise templates.TemplateProblem("config.template: rendered empty")
        if message == "text":
            return {"type": "text", "text": {"preview_url": False, "body": body[:TEXT_LIMIT]}}
        if message == "template":
            return {"type": "template", "template": self._wa_template(config["wa_template"], event)}
        if message == "buttons":
            buttons = [
                {
                    "type": "reply",
                    "reply": {
                        "id": _rendered(b, "id", event, f"config.buttons[{i}]", 256),
                        "title": _rendered(b, "text", event, f"config.buttons[{i}]", BUTTON_TITLE),
                    },
                }
                for i, b in enumerate(config["buttons"])
            ]
            interactive: dict[str, Any] = {
                "type": "button",
                "body": {"text": body[:TEXT_LIMIT]},
                "action": {"buttons": buttons},
            }
            return {"type": "interactive", "interactive": interactive}
        if message == "list":
            return {"type": "interactive", "interactive": self._list(config["list"], body, event)}
        media = config["media"]
        part: dict[str, Any] = {"link": _rendered(media, "url", event, "config.media", 2048)}
        if body and media["type"] != "audio":
            part["caption"] = body[:CAPTION_LIMIT]
        if media["type"] == "document" and media.get("filename") is not None:
            part["filename"] = _rendered(media, "filename", event, "config.media", 240)
        return {"type": media["type"], media["type"]: part}

    @staticmethod
    def _wa_template(spec: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        components = []
        for i, comp in enumerate(spec.get("components", [])):
            values = [
                _rendered({"value": v}, "value", event, f"config.wa_template.components[{i}]", 1024)
                for v in comp["parameters"]
            ]
            out: dict[str, Any] = {"type": comp["type"]}
            if comp["type"] == "button":
                out["sub_type"] = comp["sub_type"]
                out["index"] = str(comp["index"])
                kind = "payload" if comp["sub_type"] == "quick_reply" else "text"
                out["parameters"] = [{"type": kind, kind: v} for v in values]
            else:
                out["parameters"] = [{"type": "text", "text": v} for v in values]
            components.append(out)
        template: dict[str, Any] = {"name": spec["name"], "language": {"code": spec["language"]}}
        if components:
            template["components"] = components
        return template

    @staticmethod
    def _list(spec: dict[str, Any], body: str, event: dict[str, Any]) -> dict[str, Any]:
        sections = []
        for i, section in enumerate(spec["sections"]):
            at = f"config.list.sections[{i}]"
            rows = []
            for j, row in enumerate(section["rows"]):
                rendered = {
                    "id": _rendered(row, "id", event, f"{at}.rows[{j}]", 200),
                    "title": _rendered(row, "title", event, f"{at}.rows[{j}]", ROW_TITLE),
                }
                if row.get("description") is not None:
                    rendered["description"] = _rendered(
                        row, "description", event, f"{at}.rows[{j}]", ROW_DESCRIPTION
                    )
                rows.append(rendered)
            out: dict[str, Any] = {"rows": rows}
            if section.get("title") is not None:
                out["title"] = _rendered(section, "title", event, at, ROW_TITLE)
            sections.append(out)
        return {
            "type": "list",
            "body": {"text": body[:TEXT_LIMIT]},
            "action": {
                "button": _rendered(spec, "button", event, "config.list", BUTTON_TITLE),
                "sections": sections,
            },
        }

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        config = destination.config
        try:
            phone = recipient(config, out.event)
            payload = await self.ctx.renderer.run(self._payload, config, out.event)
        except templates.TemplateProblem as exc:
            return template_failure(exc)
        except PhoneProblem as exc:
            return SendResult(False, error="other", message=str(exc))
        if not destination.secrets or not destination.secrets[0]:
            return SendResult(
                False, error="other", message="no access token: set the destination secret"
            )
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": phone}
        body.update(payload)
        base = str(config.get("base_url") or GRAPH_URL).rstrip("/")
        version = config.get("api_version", API_VERSION)
        url = f"{base}/{version}/{config['phone_number_id']}/messages"
        headers = {
            "content-type": "application/json",
            "user-agent": "Switchboard/0.1",
            "authorization": f"Bearer {destination.secrets[0]}",
        }
        result = await post(
            self.ctx.session,
            url,
            orjson.dumps(body),
            headers,
            destination.timeout,
            credentials=("authorization",),
        )
        if result.ok:
            result = replace(result, provider_id=message_id(result.response))
        return result


def recipient(config: dict[str, Any], event: dict[str, Any]) -> str:
    """The phone to send to, digits only (as the gateway channel reads it); raises PhoneProblem
    naming where it was read."""
    if config.get("to_path"):
        raw, where = lookup(event, config["to_path"]), config["to_path"]
    else:
        raw, where = config.get("to"), "config.to"
    try:
        return normalize_phone(raw, config.get("default_country"))
    except PhoneProblem as exc:
        raise PhoneProblem(f"phone at {where} {exc}") from exc


def message_id(response: str) -> str | None:
    """``messages[0].id`` of a Graph API answer (``wamid.…``), or None."""
    try:
        parsed = orjson.loads(response)
    except orjson.JSONDecodeError:
        return None
    messages = parsed.get("messages") if isinstance(parsed, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        if isinstance(found, str) and found:
            return found
    return None
