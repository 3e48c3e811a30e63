"""Typed endpoints: each declares its path, query, body and response models once, as msgspec
Structs with `Meta` constraints. The handler decodes its request with them (every violation a
400 naming its path) and `openapi.py` publishes the same models, so the document is generated
from the code that checks the requests and cannot drift from it.

Declaring one (see `api/admin.py`):

    class KeyIn(Body):
        name: Annotated[str, Meta(max_length=200)] = "key"

    @endpoint("POST /v1/keys", "createKey", "tenants & keys", "Create an API key",
              "A key for this tenant.", scope="manage", body=KeyIn, ok={201: (ApiKey, "Created.")})
    async def create_key(request: Request) -> Response:
        body = await decode_body(request, KeyIn, 65536)
        ...
        return respond(ApiKey(...), 201)

and `routes = routes_of(create_key, ...)` in the module, listed in openapi.py's `TYPED`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import msgspec.inspect
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.common import JSON_TYPES, read_json
from switchboard.errors import ApiError, BadRequest

__all__ = [
    "PUBLIC",
    "Body",
    "Endpoint",
    "Model",
    "Params",
    "Raw",
    "convert",
    "decode_body",
    "decode_headers",
    "decode_path",
    "decode_query",
    "endpoint",
    "respond",
    "routes_of",
]

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


class Model(msgspec.Struct, kw_only=True, omit_defaults=False):
    """A response shape."""


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A request body: unknown fields are refused, so a misspelt field is never ignored."""


class Params(msgspec.Struct, kw_only=True):
    """Path or query parameters, decoded from their text (`"5"` → 5, `"true"` → True)."""


@dataclass(frozen=True)
class Raw:
    """A body that is not a JSON model: an HTML page, Prometheus text, an event stream, a file.
    `schema` describes it (a string unless said otherwise)."""

    media: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


# What an operation answers with: a model (or any type msgspec describes, such as
# `list[Event]`), a Raw body, or None for no body.
Reply = tuple[Any, str]
PUBLIC = (
    "public"  # the scope of an operation that takes no API key (a signed token, a health probe)
)


@dataclass(frozen=True)
class Endpoint:
    """One operation: its route and the models the document describes it with."""

    route: str  # "POST /v1/keys"
    op_id: str
    tag: str
    summary: str
    description: str
    scope: str  # the API key scope it needs: ingest, read, manage, pii, admin, or PUBLIC
    path: type[Params] | None = None
    query: type[Params] | None = None
    headers: type[Params] | None = None  # request headers the operation reads (beyond the key)
    body: Any = None  # a Body model (or another type msgspec describes), or a Raw
    body_media: tuple[str, ...] = ("application/json",)  # the media types `body` comes in
    body_required: bool = True
    ok: dict[int, Reply] = field(default_factory=dict)
    errors: tuple[int, ...] = ()  # beyond what every operation may answer (see openapi._op)
    # another way in than a bearer key of `scope` (Segment's write key): OpenAPI security items
    security: tuple[dict[str, list[str]], ...] = ()

    @property
    def method(self) -> str:
        return self.route.split(" ")[0]

    @property
    def url(self) -> str:
        return self.route.split(" ")[1]

    @property
    def served_url(self) -> str:
        """The route's path as Starlette matches it: a path field whose Meta carries
        `extra={"slashes": True}` (see `SLASHES`) takes "/" too, as `{name:slashed}`; the document
        keeps the plain `{name}`."""
        url = self.url
        if self.path is not None:
            for f in msgspec.structs.fields(self.path):
                if any(
                    getattr(m, "extra", None) == SLASHES
                    for m in getattr(f.type, "__metadata__", ())
                ):
                    url = url.replace(f"{{{f.encode_name}}}", f"{{{f.encode_name}:slashed}}")
        return url


# The `extra` of a path field's Meta that lets it hold "/" (ids that come from other systems:
# recipients, subjects), served with the `slashed` convertor below.
SLASHES = {"slashes": True}


class _Slashed(Convertor[str]):
    """Any text, "/" and line breaks included (Starlette's `path` is `.*`, which stops at a line
    break and so answered 404): the field's model decides, with a 400 naming it."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("slashed", _Slashed())


def endpoint(
    route: str,
    op_id: str,
    tag: str,
    summary: str,
    description: str,
    *,
    scope: str,
    path: type[Params] | None = None,
    query: type[Params] | None = None,
    headers: type[Params] | None = None,
    body: Any = None,
    body_media: tuple[str, ...] = ("application/json",),
    body_required: bool = True,
    ok: dict[int, Reply],
    errors: tuple[int, ...] = (),
    security: tuple[dict[str, list[str]], ...] = (),
) -> Callable[[Handler], Handler]:
    """Attach an Endpoint to its handler; `routes_of` serves it and openapi.py describes it."""
    spec = Endpoint(
        route,
        op_id,
        tag,
        summary,
        description,
        scope,
        path,
        query,
        headers,
        body,
        body_media,
        body_required,
        ok,
        errors,
        security,
    )

    def attach(handler: Handler) -> Handler:
        handler.endpoint = spec  # type: ignore[attr-defined]
        return handler

    return attach


def routes_of(*handlers: Handler) -> list[Route]:
    return [
        Route(spec.served_url, h, methods=[spec.method])
        for h in handlers
        if (spec := endpoint_of(h))
    ]


def endpoint_of(handler: Handler) -> Endpoint:
    spec = getattr(handler, "endpoint", None)
    if not isinstance(spec, Endpoint):
        raise TypeError(f"{handler.__qualname__} has no @endpoint")
    return spec


def endpoints_of(handlers: Sequence[Handler]) -> list[Endpoint]:
    return [endpoint_of(h) for h in handlers]


# --- decoding -----------------------------------------------------------------------------------

_AT = re.compile(r" - at `\$(.*)`$")
_MISSING = re.compile(r"(?:missing required|contains unknown) field `([^`]*)`")


def _problem(exc: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """msgspec's "Expected `str`, got `int` - at `$.scopes[0]`" → ("/scopes/0", "Expected …")."""
    text = str(exc)
    found = _AT.search(text)
    message = text[: found.start()] if found else text
    where = found.group(1) if found else ""
    parts = [p for p in re.split(r"\.|\[|\]", where) if p]
    if missing := _MISSING.search(message):  # name the missing or unknown field itself
        parts.append(missing.group(1))
    if prefix == "/":
        return "/" + "/".join(parts), message
    # a parameter is named by itself (`?type`, not the item of a repeated one; a name may hold
    # dots, as `hub.verify_token` does), or a path parameter by its own name
    name = missing.group(1) if missing else where.removeprefix(".").split("[", 1)[0]
    return prefix + name, message


async def decode_body(
    request: Request, model: type[T], limit: int, types: tuple[str, ...] = JSON_TYPES
) -> T:
    """The JSON body as `model`, after the checks every body gets (`common.read_json`: content
    type, size, NUL in text, depth); a violation of the model is a 400 naming the field's JSON
    pointer."""
    return convert(await read_json(request, limit, types), model)


def convert(doc: Any, model: type[T], error: type[ApiError] = BadRequest, prefix: str = "") -> T:
    """`doc` (parsed JSON) as `model`; a violation is `error` (a 400 unless said otherwise)
    naming the field's JSON pointer, its message after `prefix`."""
    try:
        return msgspec.convert(doc, type=model)
    except msgspec.ValidationError as exc:
        path, message = _problem(exc, "/")
        raise error(
            f"{prefix}{path}: {message}", details=[{"path": path, "message": message}]
        ) from None


def decode_query(request: Request, model: type[T]) -> T:
    """The query string as `model`: a list field takes every value of its repeated name
    (`?type=a&type=b`), any other field the last; a violation is a 400 naming `?name`."""
    params = request.query_params
    lists = _list_fields(model)
    doc = {k: params.getlist(k) if k in lists else params[k] for k in params}
    try:
        return msgspec.convert(doc, type=model, strict=False)
    except msgspec.ValidationError as exc:
        path, message = _problem(exc, "?")
        raise BadRequest(
            f"query parameter {path[1:]!r}: {message}",
            details=[{"path": path, "message": message}],
        ) from None


def decode_headers(request: Request, model: type[T]) -> T:
    """The request headers a model names (field `idempotency_key` ← header `Idempotency-Key`,
    or the name a `msgspec.field(name=...)` gives); a violation is a 400 naming the header."""
    doc = {}
    for f in msgspec.structs.fields(model):  # type: ignore[arg-type]
        value = request.headers.get(f.encode_name.replace("_", "-"))
        if value is not None:
            doc[f.encode_name] = value
    try:
        return msgspec.convert(doc, type=model, strict=False)
    except msgspec.ValidationError as exc:
        path, message = _problem(exc, "")
        path = path.replace("_", "-")  # the header's own name
        raise BadRequest(
            f"header {path!r}: {message}", details=[{"path": path, "message": message}]
        ) from None


_lists: dict[type[Any], frozenset[str]] = {}


def _list_fields(model: type[Any]) -> frozenset[str]:
    if (known := _lists.get(model)) is None:
        info = msgspec.inspect.type_info(model)
        fields = info.fields if isinstance(info, msgspec.inspect.StructType) else ()
        known = _lists[model] = frozenset(f.encode_name for f in fields if _is_list(f.type))
    return known


def _is_list(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.Metadata):  # Annotated[list[...], Meta(...)]
        return _is_list(t.type)
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_is_list(u) for u in t.types)
    return isinstance(t, msgspec.inspect.ListType | msgspec.inspect.SetType)


def decode_path(request: Request, model: type[T]) -> T:
    """The path parameters as `model`; a violation is a 400 naming the parameter."""
    try:
        return msgspec.convert(dict(request.path_params), type=model, strict=False)
    except msgspec.ValidationError as exc:
        path, message = _problem(exc, "")
        raise BadRequest(
            f"path parameter {path!r}: {message}", details=[{"path": path, "message": message}]
        ) from None


_encoder = msgspec.json.Encoder()


def respond(model: Any, status: int = 200) -> Response:
    """A typed answer, encoded by msgspec."""
    return Response(_encoder.encode(model), status_code=status, media_type="application/json")
