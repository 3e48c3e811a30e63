"""What `api/contract.py` lacks for the people endpoints (recipients, templates, purposes): a body
decoded into its model where a violation is a 422, as these endpoints have always answered; and
the one shape of a recipient id, which is the `subject` of events and comes from other systems,
so it takes a "/" in paths too (`contract.SLASHES`)."""

from __future__ import annotations

from typing import Annotated, TypeVar

from msgspec import Meta
from starlette.requests import Request

from switchboard.api.common import read_json
from switchboard.api.contract import SLASHES, Params, convert
from switchboard.errors import Unprocessable
from switchboard.people import RECIPIENT_ID_MAX

T = TypeVar("T")

RecipientId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=RECIPIENT_ID_MAX,
        # the route takes any text (contract.SLASHES); a line break is refused here, a 400
        pattern=r"^[^\n]+(?!\n)$",
        description=f"The recipient: the `subject` of the events about them (1 to "
        f"{RECIPIENT_ID_MAX} characters, '/' allowed, no line break).",
        extra=SLASHES,
    ),
]


class SubjectPath(Params):
    """A subject in a path: the events' `subject`, which is also the recipient's id."""

    subject: RecipientId


async def decode_invalid(request: Request, model: type[T], limit: int) -> T:
    """`contract.decode_body`, but a body that is well-formed JSON and violates the model is a
    422 naming the field's JSON pointer (malformed JSON, a wrong content type or NUL stay 400)."""
    return convert(await read_json(request, limit), model, Unprocessable)
