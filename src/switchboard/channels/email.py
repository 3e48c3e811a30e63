"""Email over SMTP (aiosmtplib): a text and/or HTML message rendered from templates.

Recipients are fixed (``config.to``) or read from the event (``config.to_path``, e.g.
``data.email``). The Message-ID is derived from the delivery id, so every attempt of one delivery
carries the same id and mail systems can recognise a repeat. SMTP reply codes are reported as the
attempt's status: 250 on success, 4xx (temporary) and 5xx (permanent) on refusal.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import aiosmtplib

from switchboard import egress, engagement, templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult, truncate
from switchboard.channels.fields import (
    check_path,
    check_template,
    lookup,
    render_field,
    template_failure,
)

SECURITY = ("none", "starttls", "tls")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
DEFAULT_SUBJECT = "{{ type }}"
DEFAULT_TEXT = "{{ type }} {{ subject or '' }}\n\n{{ data|tojson }}\n"
MAX_RECIPIENTS = 50

# Minimal on purpose: one @, something on each side, no spaces, commas, brackets or quotes (which
# also rules out header injection); the SMTP server is the real judge.
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\.]+")
_ID_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def valid_address(value: Any) -> bool:
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def _sender(config: dict[str, Any]) -> str:
    """The bare address in ``config.from`` (which may be ``Name <addr>``)."""
    return parseaddr(str(config.get("from", "")))[1]


class EmailChannel:
    kind = "email"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        if not isinstance(config.get("host"), str) or not config["host"]:
            problems.append("config.host: required, the SMTP server's name or address")
        port = config.get("port")
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
        ):
            problems.append("config.port: must be a port number (1-65535)")
        if config.get("security", "starttls") not in SECURITY:
            problems.append(f"config.security: must be one of {', '.join(SECURITY)}")
        if "username" in config and not isinstance(config["username"], str):
            problems.append("config.username: must be a string (the password is the secret)")
        if "password" in config:
            problems.append("config.password: not allowed here; store it as the secret")
        if not valid_address(_sender(config)) or "\n" in str(config.get("from", "")):
            problems.append("config.from: required, an address such as 'Team <team@example.com>'")
        if "reply_to" in config and not valid_address(config["reply_to"]):
            problems.append("config.reply_to: must be an email address")
        if "validate_certs" in config and not isinstance(config["validate_certs"], bool):
            problems.append("config.validate_certs: must be true or false")
        problems += check_path(config, "to", "to_path")
        to = config.get("to")
        if to not in (None, "", []):
            addresses = [to] if isinstance(to, str) else to
            if not isinstance(addresses, list) or not all(valid_address(a) for a in addresses):
                problems.append("config.to: must be a list of email addresses")
            elif len(addresses) > MAX_RECIPIENTS:
                problems.append(f"config.to: at most {MAX_RECIPIENTS} addresses")
        for field in ("subject_template", "text_template", "html_template"):
            problems += check_template(config, field)
        problems += engagement.parse_tracking(config.get("tracking"))[1]
        return problems

    def recipients(self, config: dict[str, Any], event: dict[str, Any]) -> list[str]:
        """The addresses to send to; raise ValueError saying where nothing usable was found."""
        path = config.get("to_path")
        raw = lookup(event, path) if path else config.get("to")
        where = path or "config.to"
        values = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list):
            values = []
        addresses = [v.strip() for v in values if isinstance(v, str) and v.strip()]
        if not addresses:
            raise ValueError(f"no recipient at {where}")
        bad = [a for a in addresses if not valid_address(a)]
        if bad:
            raise ValueError(f"not an email address at {where}: {bad[0][:60]!r}")
        if len(addresses) > MAX_RECIPIENTS:
            raise ValueError(f"more than {MAX_RECIPIENTS} recipients at {where}")
        return addresses

    def message(self, config: dict[str, Any], out: Outbound, recipients: list[str]) -> EmailMessage:
        """The message to send; raises TemplateProblem."""
        event = out.event
        subject = render_field(config, "subject_template", event, default=DEFAULT_SUBJECT)
        html = None
        if config.get("html_template"):
            html = render_field(config, "html_template", event, html=True)
            if out.stamp is not None:  # bounded: MAX_HTML characters, `max_links` links
                html = engagement.rewrite(html, out.stamp)[0]
        text = None
        if config.get("text_template") or html is None:
            text = render_field(config, "text_template", event, default=DEFAULT_TEXT)

        msg = EmailMessage()
        msg["From"] = config["from"]
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = " ".join(subject.split())  # a header is one line
        if config.get("reply_to"):
            msg["Reply-To"] = config["reply_to"]
        msg["Date"] = format_datetime(datetime.now(UTC))
        domain = _sender(config).rpartition("@")[2] or "switchboard.invalid"
        msg["Message-ID"] = f"<{_ID_SAFE.sub('', out.delivery_id)}@{domain}>"
        msg["X-Switchboard-Event-Id"] = _ID_SAFE.sub("", str(event.get("id", "")))
        msg["X-Switchboard-Delivery-Id"] = _ID_SAFE.sub("", out.delivery_id)
        for name, value in out.headers.items():  # the hub's own (List-Unsubscribe), one line each
            if name.startswith("List-Unsubscribe") and "\n" not in value and "\r" not in value:
                msg[name] = value
        if text is not None:
            msg.set_content(text)
            if html is not None:
                msg.add_alternative(html, subtype="html")
        elif html is not None:
            msg.set_content(html, subtype="html")
        return msg

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        config = destination.config
        try:
            recipients = self.recipients(config, out.event)
        except ValueError as exc:
            return SendResult(False, error="other", message=str(exc))
        try:
            msg = await self.ctx.renderer.run(self.message, config, out, recipients)
        except templates.TemplateProblem as exc:
            return template_failure(exc)
        except ValueError as exc:  # a header the email package refuses
            return SendResult(False, error="other", message=f"bad header: {exc}")
        shown = {
            "Message-ID": str(msg["Message-ID"]),
            "X-Switchboard-Event-Id": str(msg["X-Switchboard-Event-Id"]),
            "X-Switchboard-Delivery-Id": str(msg["X-Switchboard-Delivery-Id"]),
        }
        username = config.get("username") or None
        password = destination.secrets[0] if username and destination.secrets else None
        if username and not password:
            return SendResult(
                False,
                error="other",
                message="config.username is set but no "
                "password: store it as the destination's secret",
                request_headers=shown,
            )
        security = config.get("security", "starttls")
        timeout = destination.timeout
        port = config.get("port") or DEFAULT_PORTS.get(security, 587)
        try:
            # resolved, checked and connected here; aiosmtplib gets the socket and keeps the
            # name for TLS (server_hostname), so the guard sees the address really used
            async with asyncio.timeout(timeout):
                sock = await egress.connect_checked(self.ctx.egress, config["host"], port)
        except egress.EgressDenied as exc:  # nothing was sent: no headers, no answer to keep
            return SendResult(False, error="egress_denied", message=str(exc))
        except TimeoutError:
            return SendResult(
                False, error="timeout", message=f"no answer in {timeout} s", request_headers=shown
            )
        except OSError as exc:
            return SendResult(
                False,
                error="connection",
                message=f"{type(exc).__name__}: {exc}",
                request_headers=shown,
            )
        try:
            refused, reply = await aiosmtplib.send(
                msg,
                sender=_sender(config),
                recipients=recipients,
                hostname=config["host"],
                sock=sock,
                username=username,
                password=password,
                use_tls=security == "tls",
                start_tls=security == "starttls",
                validate_certs=config.get("validate_certs", True),
                timeout=timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            code = min(codes)  # one temporary refusal makes the whole attempt worth retrying
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients[:3])
            return _refused(code, f"recipients refused: {detail}", shown)
        except aiosmtplib.SMTPResponseException as exc:
            return _refused(exc.code, f"{type(exc).__name__}: {exc.code} {exc.message}", shown)
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            return SendResult(
                False, error="timeout", message=f"no answer in {timeout} s", request_headers=shown
            )
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            return SendResult(
                False,
                error="connection",
                message=f"{type(exc).__name__}: {exc}",
                request_headers=shown,
            )
        except aiosmtplib.SMTPException as exc:
            return SendResult(
                False, error="other", message=f"{type(exc).__name__}: {exc}", request_headers=shown
            )
        message = None
        if refused:  # some recipients were refused, the others accepted the message
            message = "some recipients refused: " + "; ".join(
                f"{addr}: {r.code}" for addr, r in list(refused.items())[:3]
            )
        return SendResult(
            True, status=250, message=message, response=truncate(reply), request_headers=shown
        )


def _refused(code: int, message: str, shown: dict[str, str]) -> SendResult:
    permanent = code >= 500
    return SendResult(
        False,
        status=code if code > 0 else None,
        error="other" if permanent or code <= 0 else None,
        message=message,
        request_headers=shown,
    )
