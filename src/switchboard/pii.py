"""Personal data: the PII classes a catalog declares and how a value of each is masked.

A catalog type lists its PII paths (``pii: [name, phone, email]``); each path has a class, named
in ``pii_classes`` or taken from the path's last segment (``customerEmail`` → ``email``,
``phone_raw`` → ``phone``), and anything else is ``free_text``. The masks keep just enough to
recognise a record you already know (``j***@e***.com.br``, ``+55 31 9****-5432``,
``***.456.789-**``, ``J. P.``) and never enough to learn a new one. Everything here is pure: the
API's redaction (``api/privacy.py``) walks its answers with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "PiiClass",
    "Redactor",
    "classify",
    "field_classes",
    "mask",
    "mask_text",
]


class PiiClass(StrEnum):
    EMAIL = "email"  # first letter of the user and of the domain's first label
    PHONE = "phone"  # country and area code, the first and the last 4 digits
    CPF = "cpf"  # the middle 6 digits, as Brazil's own receipts show them
    CNPJ = "cnpj"  # the branch part only (a company's registration is often public)
    NAME = "name"  # initials
    IP = "ip"  # the network half (IPv4 /16, IPv6 /32)
    FREE_TEXT = "free_text"  # nothing but its length


# the last path segment's words that say a field's class (checked in this order: `ip_email`
# would be an email); anything else is free text
_HINTS: tuple[tuple[PiiClass, tuple[str, ...]], ...] = (
    (PiiClass.EMAIL, ("email", "e_mail", "mail")),
    (PiiClass.CNPJ, ("cnpj",)),
    (PiiClass.CPF, ("cpf",)),
    (PiiClass.PHONE, ("phone", "telefone", "celular", "whatsapp", "mobile", "from", "msisdn")),
    (PiiClass.IP, ("ip", "ip_address", "ipaddress", "remote_addr")),
    (PiiClass.NAME, ("name", "nome", "full_name", "fullname")),
)
_WORD_SPLIT = re.compile(r"[_\-.]|(?<=[a-z0-9])(?=[A-Z])")


def classify(path: str) -> PiiClass:
    """The class a PII path gets when the catalog does not name one: from its last segment's
    words (``customerEmail``, ``phone_raw``, ``sender_name``), else free text."""
    last = path.rsplit(".", 1)[-1]
    words = [w.lower() for w in _WORD_SPLIT.split(last) if w]
    joined = "_".join(words)
    for cls, hints in _HINTS:
        for hint in hints:
            if hint == joined or hint in words:
                return cls
    return PiiClass.FREE_TEXT


def field_classes(pii: tuple[str, ...], declared: Mapping[str, str]) -> dict[str, PiiClass]:
    """Every PII path of a type with its class (`declared` first, else `classify`)."""
    return {p: PiiClass(declared[p]) if p in declared else classify(p) for p in pii}


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def mask_email(value: str) -> str:
    user, at, domain = value.partition("@")
    if not at:
        return mask_free_text(value)
    label, dot, rest = domain.partition(".")
    shown_domain = f"{label[:1]}***{dot}{rest}" if dot else f"{label[:1]}***"
    return f"{user[:1]}***@{shown_domain}"


def mask_phone(value: str) -> str:
    """``+55 31 99876-5432`` → ``+55 31 9****-5432``; without a country code the first two
    digits are taken for the area code; fewer than 8 digits show nothing but the last 2."""
    digits = _digits(value)
    if len(digits) < 8:
        return "*" * max(len(digits) - 2, 1) + digits[-2:]
    country = ""
    if value.lstrip().startswith("+") or len(digits) >= 12:
        # a mobile number has 11 national digits, a landline 10
        cut = len(digits) - (11 if len(digits) >= 13 else 10)
        country, digits = digits[: max(cut, 1)], digits[max(cut, 1) :]
    area, local = digits[:2], digits[2:]
    shown = f"{local[:1]}{'*' * max(len(local) - 5, 1)}-{local[-4:]}"
    return f"+{country} {area} {shown}" if country else f"{area} {shown}"


def mask_cpf(value: str) -> str:
    digits = _digits(value)
    if len(digits) != 11:
        return mask_free_text(value)
    return f"***.{digits[3:6]}.{digits[6:9]}-**"


def mask_cnpj(value: str) -> str:
    digits = _digits(value)
    if len(digits) != 14:
        return mask_free_text(value)
    return f"**.***.***/{digits[8:12]}-**"


def mask_name(value: str) -> str:
    """Initials: ``Joana Pereira`` → ``J. P.``."""
    return " ".join(f"{w[0].upper()}." for w in value.split() if w[:1].isalpha()) or "***"


def mask_ip(value: str) -> str:
    if ":" in value:
        groups = value.split(":")
        return ":".join(groups[:2]) + ":…"
    parts = value.split(".")
    if len(parts) == 4:
        return f"{parts[0]}.{parts[1]}.*.*"
    return mask_free_text(value)


def mask_free_text(value: str) -> str:
    return f"[{len(value)} characters hidden]"


_MASKS = {
    PiiClass.EMAIL: mask_email,
    PiiClass.PHONE: mask_phone,
    PiiClass.CPF: mask_cpf,
    PiiClass.CNPJ: mask_cnpj,
    PiiClass.NAME: mask_name,
    PiiClass.IP: mask_ip,
    PiiClass.FREE_TEXT: mask_free_text,
}


def mask(value: Any, cls: PiiClass) -> Any:
    """The masked form of one PII value; a number is masked as its text, an object or array
    as free text (its JSON is never shown), None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "***"
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return "[hidden]"
    return _MASKS[cls](value)


# Pattern detectors for text nobody declared (a provider's raw request body, an attempt's
# answer, a message): each matches whole tokens only, so ids and timestamps stay readable.
_DETECTORS: tuple[tuple[PiiClass, re.Pattern[str]], ...] = (
    (PiiClass.EMAIL, re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    (PiiClass.CNPJ, re.compile(r"(?<![\w./-])\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}(?![\w/-])")),
    (PiiClass.CPF, re.compile(r"(?<![\w./-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\w/-])")),
    (
        PiiClass.PHONE,
        re.compile(r"(?<![\w+.:/-])\+?\d{2}[ (]*\d{2}[ )]*9?\d{4}[ -]?\d{4}(?![\w.:/-])"),
    ),
)


_DIGITS = re.compile(r"\d{3}")  # every number detector needs a run of 3 digits (a CPF)


def mask_text(text: str, known: Mapping[str, str] | None = None) -> str:
    """`text` with every `known` raw value (raw → masked) and every email, CPF, CNPJ and
    phone number the detectors find replaced by its mask."""
    if known:
        text = _replace_known(text, _index(known), known)
    return _detect(text)


# all detectors in one pattern: one pass over the text, the first that matches at a place wins
_DETECT = re.compile("|".join(f"(?P<{cls.value}>{p.pattern})" for cls, p in _DETECTORS))


def _detect(text: str) -> str:
    # a cheap test first: most strings of an answer are ids, times and words
    if "@" not in text and _DIGITS.search(text) is None:
        return text
    return _DETECT.sub(_detected, text)


def _detected(match: re.Match[str]) -> str:
    return _MASKS[PiiClass(match.lastgroup or "free_text")](match.group(0))


_ANCHOR = 3  # raw values are found by their first 3 characters (shorter ones are not kept)


Index = dict[str, list[tuple[int, frozenset[str]]]]


def _index(known: Mapping[str, str]) -> Index:
    """The raw values by their first characters, then by length, longest first (a name inside
    an email is replaced as part of the email)."""
    grouped: dict[str, dict[int, set[str]]] = {}
    for raw in known:
        grouped.setdefault(raw[:_ANCHOR], {}).setdefault(len(raw), set()).add(raw)
    return {
        anchor: [(n, frozenset(by_len[n])) for n in sorted(by_len, reverse=True)]
        for anchor, by_len in grouped.items()
    }


def _replace_known(text: str, index: Index, known: Mapping[str, str]) -> str:
    """One left-to-right pass, linear in the text: at each position, the values sharing its
    first characters are looked up by length (a regular expression of hundreds of alternatives
    costs milliseconds to compile for each answer)."""
    parts: list[str] = []
    i = last = 0
    end = len(text) - _ANCHOR
    while i <= end:
        by_length = index.get(text[i : i + _ANCHOR])
        if by_length:
            for n, raws in by_length:
                if text[i : i + n] in raws:
                    parts += (text[last:i], known[text[i : i + n]])
                    i = last = i + n
                    break
            else:
                i += 1
        else:
            i += 1
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _walk(data: Any, parts: list[str]) -> Iterator[tuple[Any, str]]:
    """(container, key) pairs holding the value at a dotted path; arrays are stepped into."""
    if isinstance(data, list):
        for item in data:
            yield from _walk(item, parts)
        return
    if not isinstance(data, dict) or not parts:
        return
    head, rest = parts[0], parts[1:]
    if head not in data:
        return
    if not rest:
        yield data, head
    else:
        yield from _walk(data[head], rest)


class Redactor:
    """Masks the PII of one answer: event `data` by its type's classes, then every string by
    the raw values it met (a delivery body or an attempt that copied them) and the detectors.
    It learns raw values as it goes, so mask the events of an answer before its other text."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}  # raw value → its mask
        self._index: Index | None = None  # of `known`; reset on learning
        self._masked: dict[int, Any] = {}  # the data objects `data` returned, by id

    def learn(self, data: Any, classes: Mapping[str, PiiClass]) -> None:
        """Remember the raw PII values of `data` without changing it (events an answer only
        refers to, such as the event of a delivery)."""
        for path, cls in classes.items():
            for container, key in _walk(data, path.split(".")):
                self._remember(container[key], cls)

    def _remember(self, raw: Any, cls: PiiClass) -> Any:
        masked = mask(raw, cls)
        if isinstance(raw, str | int | float) and not isinstance(raw, bool):
            text = str(raw)
            if len(text) >= 3:  # shorter values would mask unrelated text
                self.known[text] = masked
                self._index = None
        elif isinstance(raw, dict | list):
            for leaf in _leaves(raw):
                if len(leaf) >= 3:
                    self.known[leaf] = mask_free_text(leaf)
                    self._index = None
        return masked

    def data(self, data: Any, classes: Mapping[str, PiiClass]) -> Any:
        """A copy of `data` with each PII path masked."""
        if not classes or not isinstance(data, dict):
            return data
        out = _copy(data)
        for path, cls in classes.items():
            for container, key in _walk(out, path.split(".")):
                container[key] = self._remember(container[key], cls)
        self._masked[id(out)] = out  # held, so the id stays this object's
        return out

    def text(self, value: str) -> str:
        if len(value) < 3:
            return value
        if self.known:
            if self._index is None:
                self._index = _index(self.known)
            value = _replace_known(value, self._index, self.known)
        return _detect(value)

    def strings(self, doc: Any) -> Any:
        """`doc` with every string (keys aside) passed through `text`, except the values of
        structural keys (ids, times, statuses). Event data this redactor masked by its classes
        only goes through the shape detectors: its declared fields are masked already, and
        looking for every other event's raw values in it would cost more than the rest."""
        if isinstance(doc, str):
            return self.text(doc)
        if isinstance(doc, dict):
            if id(doc) in self._masked:
                return _detect_all(doc)
            return {
                k: v if k in _STRUCTURAL and isinstance(v, str) else self.strings(v)
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.strings(v) for v in doc]
        return doc


def _detect_all(doc: Any) -> Any:
    if isinstance(doc, str):
        return _detect(doc)
    if isinstance(doc, dict):
        return {k: _detect_all(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_detect_all(v) for v in doc]
    return doc


# keys whose string values are ids, times, names of things or states, never a person's data
_STRUCTURAL = frozenset(
    {
        "id",
        "type",
        "version",
        "time",
        "received_at",
        "created_at",
        "updated_at",
        "next_attempt_at",
        "started_at",
        "recorded_at",
        "trace_id",
        "correlation_id",
        "causation_id",
        "status",
        "event_id",
        "delivery_id",
        "destination_id",
        "route_id",
        "replay_id",
        "source_id",
        "next_cursor",
        "priority",
    }
)


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def erase(data: Any, paths: Iterable[str]) -> Any:
    """A copy of `data` with the value at each PII path replaced by None (an erased subject's
    events keep their shape, so counts and metrics still add up)."""
    out = _copy(data)
    for path in paths:
        for container, key in _walk(out, path.split(".")):
            container[key] = None
    return out
