"""The dashboard's session cookie, CSRF tokens and chart geometry: pure functions."""

from __future__ import annotations

from switchboard.ui import charts
from switchboard.ui import session as sess

SECRET = b"k" * 32


def test_a_session_round_trips_and_any_change_is_refused() -> None:
    s = sess.new_session("key-1", "sb_abcdefgh", expires_us=2_000)
    cookie = sess.encode(SECRET, s)
    assert sess.decode(SECRET, cookie, now_us=1_000) == s
    assert sess.decode(b"other" * 8, cookie, now_us=1_000) is None
    _, sig = cookie.split(".")
    forged = sess._b64(b'["key-2","sb_abcdefgh",2000,"' + s.nonce.encode() + b'"]')
    assert sess.decode(SECRET, f"{forged}.{sig}", now_us=1_000) is None
    assert sess.decode(SECRET, cookie + "x", now_us=1_000) is None
    assert sess.decode(SECRET, "x" * 5000, now_us=1_000) is None
    assert sess.decode(SECRET, None, now_us=1_000) is None


def test_a_session_ends_at_its_expiry() -> None:
    cookie = sess.encode(SECRET, sess.new_session("key-1", "sb_abcdefgh", expires_us=2_000))
    assert sess.decode(SECRET, cookie, now_us=1_999) is not None
    assert sess.decode(SECRET, cookie, now_us=2_000) is None


def test_csrf_tokens_belong_to_one_nonce() -> None:
    token = sess.csrf_token(SECRET, "nonce-a")
    assert sess.csrf_ok(SECRET, "nonce-a", token)
    assert not sess.csrf_ok(SECRET, "nonce-b", token)
    assert not sess.csrf_ok(SECRET, "nonce-a", "")
    assert not sess.csrf_ok(SECRET, None, token)
    assert token != sess._mac(SECRET, "session", "nonce-a")  # purposes do not mix


def test_the_tallest_bar_fills_the_plot_and_stacks_add_up() -> None:
    c = charts.chart(
        [charts.Bucket("00:00", 3, 1), charts.Bucket("01:00", 1, 0), charts.Bucket("02:00", 0)],
        "succeeded",
        "failed",
    )
    plot = charts.HEIGHT - charts.AXIS
    assert c.peak == 4
    first = c.bars[0]
    assert first.good_h + first.bad_h == plot and first.bad_y == 0
    assert c.bars[1].good_h == plot / 4
    assert c.bars[2].good_h == 0 and c.bars[2].title == "02:00: 0 succeeded, 0 failed"
    assert [b.show_label for b in c.bars] == [True, False, False]
    assert all(b.x + b.width <= charts.WIDTH for b in c.bars)


def test_an_empty_chart_has_no_height() -> None:
    c = charts.chart([charts.Bucket("00:00", 0)], "events")
    assert c.peak == 0 and c.bars[0].good_h == 0 and c.bars[0].title == "00:00: 0 events"
