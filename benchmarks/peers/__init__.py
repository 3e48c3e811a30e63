"""Issue 21's peers: what a team would build instead of the hub, doing the hub's job (accept one
event per request durably into PostgreSQL, then deliver it as a signed webhook, at-least-once,
with retries), measured beside the hub in the same run by ``python -m benchmarks.peers``.

- ``celery_peer``: FastAPI + asyncpg + Celery on the Redis broker (gevent pool, ``requests``).
- ``procrastinate_peer``: the same FastAPI + asyncpg API + Procrastinate jobs in PostgreSQL
  (its async worker, ``httpx``).

Both share ``api`` (the HTTP side) and ``common`` (the table, the signed request). Their
dependencies come from ``benchmarks/peers/requirements.txt``, which only ``make bench`` installs.
"""
