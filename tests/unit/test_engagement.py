"""Email engagement, pure: tracking settings, signed tokens, HTML rewriting, the recorded event."""

from __future__ import annotations

import html
import re

import pytest

from switchboard import engagement
from switchboard.engagement import Mark, Stamp, Tracking

SECRET = "k" * 40
BASE = "https://hub.example"


def stamp(**tracking: object) -> Stamp:
    parsed, problems = engagement.parse_tracking({"opens": True, "clicks": True, **tracking})
    assert parsed is not None, problems
    return Stamp(SECRET, BASE, "t1", "ana", "del_1", "cmp_botox", parsed, 1_700_000_000)


def hrefs(body: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', body)]


def test_tracking_settings_name_every_bad_field() -> None:
    assert engagement.parse_tracking(None) == (None, [])
    parsed, problems = engagement.parse_tracking(
        {
            "opens": "yes",
            "clicked_type": "Not A Type",
            "window": "10s",
            "max_links": 1000,
            "campaign_path": "data..x",
            "pixel": True,
        }
    )
    assert parsed is None
    fields = sorted(p.split(":")[0] for p in problems)
    assert fields == [
        "config.tracking.campaign_path",
        "config.tracking.clicked_type",
        "config.tracking.max_links",
        "config.tracking.opens",
        "config.tracking.pixel",
        "config.tracking.window",
    ]
    ok, _ = engagement.parse_tracking({"clicks": True, "window": "2h", "opened_type": "abriu"})
    assert ok == Tracking(clicks=True, window=7200, opened_type="abriu")
    assert engagement.parse_tracking(["opens"])[1] == [
        "config.tracking: must be an object such as {opens: true, clicks: true}"
    ]


def test_links_are_rewritten_to_signed_tokens_carrying_the_original_url() -> None:
    body = (
        "<html><body>"
        '<a data-link-id="agendar" href="https://clinica.example/agendar?a=1&amp;b=2">Agende</a>'
        "<a href='http://clinica.example/x'>x</a>"
        '<a href="mailto:oi@clinica.example">mail</a>'
        '<a href="javascript:alert(1)">js</a>'
        '<a href="#top">top</a>'
        f'<a href="{BASE}/v1/unsubscribe/abc">sair</a>'
        "<a name=anchor>no href</a>"
        "</body></html>"
    )
    out, n = engagement.rewrite(body, stamp())
    assert n == 2
    links = hrefs(out)
    assert links[2:] == [
        "mailto:oi@clinica.example",
        "javascript:alert(1)",
        "#top",
        f"{BASE}/v1/unsubscribe/abc",
    ]
    marks = [engagement.verify(SECRET, u.rsplit("/", 1)[1]) for u in links[:2]]
    assert [(m.kind, m.link_id, m.url) for m in marks if m] == [
        ("c", "agendar", "https://clinica.example/agendar?a=1&b=2"),
        ("c", "link_2", "http://clinica.example/x"),
    ]
    assert all(u.startswith(f"{BASE}/v1/engagement/click/") for u in links[:2])
    # the pixel goes before </body>
    pixel = re.search(r'<img src="([^"]*)"', out)
    assert pixel and out.index("<img") < out.index("</body>")
    mark = engagement.verify(SECRET, html.unescape(pixel.group(1)).rsplit("/", 1)[1])
    assert mark == Mark(
        "o", "t1", "ana", "del_1", "cmp_botox", "campaign_opened", 1_700_000_000, 3600
    )


@pytest.mark.security
def test_rewriting_is_bounded_by_max_links_and_html_size() -> None:
    body = "".join(f'<a href="https://x.example/{i}">{i}</a>' for i in range(500))
    out, n = engagement.rewrite(body, stamp(max_links=3))
    assert n == 3
    assert sum(h.startswith("https://x.example/") for h in hrefs(out)) == 497
    huge = "<p>" + "x" * engagement.MAX_HTML + '<a href="https://x.example/">x</a>'
    assert engagement.rewrite(huge, stamp()) == (huge, 0)
    # a link longer than MAX_URL stays as written
    long_link = f'<a href="https://x.example/{"a" * engagement.MAX_URL}">x</a>'
    assert engagement.rewrite(long_link, stamp(opens=False))[1] == 0
    # opens only: links stay, the pixel is appended to a body without </body>
    out, n = engagement.rewrite('<a href="https://x.example/">x</a>', stamp(clicks=False))
    assert n == 0 and out.startswith('<a href="https://x.example/">') and out.endswith(">")


@pytest.mark.security
def test_only_tokens_this_hub_signed_verify() -> None:
    good = engagement.token(SECRET, stamp().mark("c", "l", "https://x.example/"))
    payload, sig = good.split(".")
    other = engagement.token(SECRET, stamp().mark("c", "l", "https://evil.example/"))
    for bad in (
        f"{other.split('.')[0]}.{sig}",  # another URL with this token's signature
        engagement.token("z" * 40, stamp().mark("c", "l", "https://x.example/")),
        f"{payload}.",
        "a" * (engagement.MAX_TOKEN + 1),
        "no-dot",
        "",
        f"{payload}.ção",  # not ASCII: refused, not a TypeError
    ):
        assert engagement.verify(SECRET, bad) is None, bad
    assert engagement.verify("", good) is None  # no secret: nothing verifies
    assert engagement.verify(SECRET, good) is not None


@pytest.mark.security
def test_only_http_and_https_urls_are_safe_targets() -> None:
    assert engagement.safe_url("https://clinica.example/a?b=1")
    for bad in (
        "javascript:alert(1)",
        "data:text/html,hi",
        "//evil.example/",
        "https://",
        "http://x.example/\r\nSet-Cookie: a=b",
        "ftp://x.example/",
        "https://x.example/" + "a" * engagement.MAX_URL,
    ):
        assert not engagement.safe_url(bad), bad


def test_repeats_within_a_window_are_one_event_and_the_next_window_another() -> None:
    mark = stamp(window="1h").mark("c", "agendar", "https://x.example/")
    sent = mark.sent
    first = engagement.event_for(mark, sent + 5, "Mozilla/5.0 (iPhone)")
    again = engagement.event_for(mark, sent + 3599, None)
    later = engagement.event_for(mark, sent + 3600, None)
    assert first["id"] == again["id"] != later["id"]
    assert first["type"] == "campaign_clicked" and first["subject"] == "ana"
    assert first["data"] == {
        "campaign_id": "cmp_botox",
        "delivery_id": "del_1",
        "link_id": "agendar",
        "url": "https://x.example/",
        "device": "mobile",
    }
    other_link = engagement.event_for(
        stamp().mark("c", "outro", "https://x.example/"), sent + 5, None
    )
    assert other_link["id"] != first["id"]
    opened = engagement.event_for(stamp().mark("o"), sent, None)
    assert opened["type"] == "campaign_opened" and "link_id" not in opened["data"]


def test_the_campaign_comes_from_the_event_then_the_automation_then_the_route() -> None:
    t = Tracking(opens=True)
    event = {"data": {"campaign_id": "cmp_a"}, "context": {"campaign_id": "cmp_b"}}
    assert engagement.campaign_of(event, t, "auto", "route") == "cmp_a"
    assert engagement.campaign_of({"context": {"campaign_id": "cmp_b"}}, t, "a", "r") == "cmp_b"
    assert engagement.campaign_of({"data": {}}, t, "auto", "route") == "auto"
    assert engagement.campaign_of({"data": {}}, t, None, "route") == "route"
    assert engagement.campaign_of({"data": {}}, t, None, None) is None
    custom = Tracking(opens=True, campaign_path="data.promo.id")
    assert engagement.campaign_of({"data": {"promo": {"id": 42}}}, custom, None, None) == "42"
