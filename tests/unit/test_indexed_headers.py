"""The ingest path's indexed headers answer like Starlette's own."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from switchboard.api import IndexedHeaders

RAW = [
    (b"content-type", b"application/json"),
    (b"x-dup", b"first"),
    (b"x-dup", b"second"),
    (b"authorization", b"Bearer sb_x"),
    (b"x-latin", "café".encode("latin-1")),
]


def both() -> tuple[Headers, IndexedHeaders]:
    scope = {"type": "http", "headers": RAW}
    return Headers(scope=scope), IndexedHeaders(scope=scope)


@pytest.mark.parametrize(
    "name", ["content-type", "Content-Type", "X-DUP", "authorization", "x-latin", "absent"]
)
def test_lookups_match_starlette(name: str) -> None:
    plain, indexed = both()
    assert indexed.get(name) == plain.get(name)
    assert indexed.get(name, "d") == plain.get(name, "d")
    assert (name in indexed) == (name in plain)
    if name in plain:
        assert indexed[name] == plain[name]
    else:
        with pytest.raises(KeyError):
            indexed[name]


def test_the_rest_of_the_mapping_is_starlettes() -> None:
    plain, indexed = both()
    assert indexed.getlist("x-dup") == ["first", "second"] == plain.getlist("x-dup")
    assert list(indexed.items()) == list(plain.items())
    assert 42 not in indexed
