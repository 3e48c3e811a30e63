"""Value helpers of mappings (pure): phone and time normalization, and the extra JMESPath
functions mapping expressions may call (``phone``, ``to_iso``, ``url_param``, ``lookup``, …)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jmespath
from jmespath import functions as jp_functions

__all__ = ["OPTIONS", "from_cents", "normalize_phone", "normalize_time", "parse_offset"]


def normalize_phone(value: str) -> str | None:
    """Digits of a phone number, Brazilian numbers in one canonical form ``55 DD 9XXXXXXXX``.

    10 or 11 digits without a leading ``+`` are read as a Brazilian DDD + number.

    ``+55 (31) 99876-5432``, ``31998765432`` and the WhatsApp form without the ninth digit
    (``553198765432``) all become ``5531998765432``. Other numbers keep their digits.
    """
    international = value.strip().startswith("+")  # the country code is written out
    digits = "".join(c for c in value if c.isdigit()).lstrip("0")
    if len(digits) in (10, 11) and not international:  # DDD + number, no country code
        digits = "55" + digits
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        digits = digits[:4] + "9" + digits[4:]  # a mobile number written before the ninth digit
    return digits or None


def parse_offset(tz: str) -> timezone:
    if tz in ("Z", "UTC", "z", ""):
        return UTC
    sign = -1 if tz.startswith("-") else 1
    hours, _, minutes = tz.lstrip("+-").partition(":")
    if not hours.isdigit() or (minutes and not minutes.isdigit()):
        raise ValueError(f"timezone must be 'Z' or an offset like '-03:00', got {tz!r}")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


def normalize_time(value: Any, tz: str = "Z") -> str | None:
    """A provider time → ISO 8601 with an offset, or None for null.

    Accepts epoch seconds (or milliseconds/microseconds, told apart by magnitude), numeric
    strings, ISO 8601 date-times (a space instead of ``T`` too) and dates; values without an
    offset are read in `tz`. Raises ValueError for anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, int | float):
        seconds = float(value)
        if abs(seconds) > 1e14:
            seconds /= 1_000_000
        elif abs(seconds) > 1e11:
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError):  # `1e300`: past what a calendar names
            raise ValueError(f"the epoch time {value!r} is out of range") from None
    if not isinstance(value, str):
        raise ValueError(f"not a time: {type(value).__name__}")
    text = value.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=parse_offset(tz)).isoformat()
    parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=parse_offset(tz))
    return parsed.isoformat().replace("+00:00", "Z")


# currencies whose amounts providers (Stripe, Pagar.me) already send in whole units
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)


def from_cents(value: Any, currency: str | None = None) -> float | int | None:
    """A provider's amount in minor units (``12356`` cents) as a number of the currency's units
    (``123.56``); zero-decimal currencies are returned as they are. None when not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if not isinstance(number, int | float):
        return None
    if currency and currency.upper() in ZERO_DECIMAL:
        return number
    return round(number / 100, 2)


class _Functions(jp_functions.Functions):
    """Extra JMESPath functions for mappings (documented in docs/sources.md)."""

    @jp_functions.signature({"types": ["string", "number", "null"]})
    def _func_digits(self, value: Any) -> str | None:
        if value is None:
            return None
        return "".join(c for c in str(value) if c.isdigit()) or None

    @jp_functions.signature({"types": ["string", "number", "null"]})
    def _func_phone(self, value: Any) -> str | None:
        return None if value is None else normalize_phone(str(value))

    @jp_functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @jp_functions.signature({"types": ["string", "null"]})
    def _func_upper(self, value: str | None) -> str | None:
        return None if value is None else value.upper()

    @jp_functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_before(self, value: str | None, sep: str) -> str | None:
        return None if value is None else value.split(sep, 1)[0]

    @jp_functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_url_param(self, url: str | None, name: str) -> str | None:
        if not url:
            return None
        try:
            values = parse_qs(urlsplit(url).query).get(name)
        except ValueError:  # not a URL (an unclosed IPv6 bracket): no parameter to find
            return None
        return values[0] if values else None

    @jp_functions.signature({"types": ["string", "number", "null"]}, {"types": ["string"]})
    def _func_to_iso(self, value: Any, tz: str) -> str | None:
        try:
            return normalize_time(value, tz)
        except ValueError:
            return None

    @jp_functions.signature(
        {"types": ["string", "number", "boolean", "null"]},
        {"types": ["object"]},
        {"types": []},
    )
    def _func_lookup(self, key: Any, table: dict[str, Any], default: Any) -> Any:
        if isinstance(key, bool):
            key = str(key).lower()
        elif isinstance(key, float) and key.is_integer():
            key = int(key)
        return table.get(str(key), default)

    @jp_functions.signature({"types": ["number", "string", "null"]}, {"types": ["string", "null"]})
    def _func_from_cents(self, value: Any, currency: str | None) -> float | int | None:
        return from_cents(value, currency)


OPTIONS = jmespath.Options(custom_functions=_Functions())
