"""The token buckets (pure, with a given clock): batches cost their events, source URLs are
limited per source and per address, and buckets of sprayed names do not pile up."""

from __future__ import annotations

import pytest

from switchboard import auth
from switchboard.auth import RateLimiter
from switchboard.errors import RateLimited

pytestmark = pytest.mark.security


def test_a_batch_over_the_burst_never_passes_and_says_the_most() -> None:
    limiter = RateLimiter(key_rate=10, key_burst=20, tenant_rate=0, tenant_burst=0)
    with pytest.raises(RateLimited, match="at most 20 at once") as caught:
        limiter.check("k", "t", 1000, now=0.0)
    assert "Retry-After" not in caught.value.headers
    limiter.check("k", "t", 20, now=0.0)  # the refusal took nothing


def test_a_batch_takes_its_events_and_waits_for_them() -> None:
    limiter = RateLimiter(key_rate=10, key_burst=20, tenant_rate=0, tenant_burst=0)
    limiter.check("k", "t", 15, now=0.0)
    with pytest.raises(RateLimited) as caught:
        limiter.check("k", "t", 10, now=0.0)
    assert caught.value.headers["Retry-After"] == "1"  # 5 missing at 10/s
    limiter.check("k", "t", 10, now=0.5)


def test_a_refused_tenant_check_gives_the_key_its_tokens_back() -> None:
    limiter = RateLimiter(key_rate=10, key_burst=20, tenant_rate=1, tenant_burst=5)
    limiter.check("k", "t", 5, now=0.0)
    with pytest.raises(RateLimited):
        limiter.check("k", "t", 5, now=0.0)
    limiter.check("k2", "t2", 5, now=0.0)
    assert limiter._buckets["k:k"].tokens == 15


def test_source_urls_are_limited_per_address_with_ipv6_by_its_64() -> None:
    limiter = RateLimiter(0, 0, 0, 0, source_ip_rate=1, source_ip_burst=2)
    limiter.check_source("s1", "2001:db8::1", now=0.0)
    limiter.check_source("s2", "2001:db8::ffff:2", now=0.0)  # the same /64
    with pytest.raises(RateLimited, match="this address"):
        limiter.check_source("s3", "2001:db8::3", now=0.0)
    limiter.check_source("s3", "2001:db8:0:1::3", now=0.0)  # another /64


def test_a_source_refusal_gives_the_address_its_token_back() -> None:
    limiter = RateLimiter(0, 0, 0, 0, 1, 1, 1, 5)
    limiter.check_source("s", "192.0.2.1", now=0.0)
    with pytest.raises(RateLimited, match="this source"):
        limiter.check_source("s", "192.0.2.1", now=0.0)
    assert limiter._buckets["ip:192.0.2.1"].tokens == 4


def test_refilled_buckets_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_PRUNE_AT", 100)
    limiter = RateLimiter(0, 0, 0, 0, source_ip_rate=10, source_ip_burst=10)
    for i in range(100):
        limiter.check_source(f"s{i}", f"198.51.100.{i}", now=0.0)
    assert len(limiter._buckets) == 100
    limiter.check_source("s", "203.0.113.1", now=5.0)  # all of them are full again by now
    assert len(limiter._buckets) == 1
