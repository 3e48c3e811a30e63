"""Peer 1's worker: Celery on the Redis broker, one task per delivery, ``acks_late`` (a task is
acknowledged after it ran, so a worker that dies mid-task has it redelivered), retried with
Celery's exponential backoff on any ``requests`` error or non-2xx answer.

Sending is ``requests`` (a module-level ``Session``, keep-alive pool of 64): a Celery task is a
plain function, and ``requests`` is what most task code calls; under the
gevent pool (Celery's documented choice for I/O-bound tasks) its sockets are cooperative. Run:
``celery -A benchmarks.peers.celery_peer worker -P gevent -c 64``.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery
from requests.adapters import HTTPAdapter

from benchmarks.peers import common

app = Celery("peer", broker=os.environ.get("PEER_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("PEER_QUEUE", "celery"),  # one queue per run
    task_acks_late=True,
    task_ignore_result=True,  # no result backend: nothing reads results
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # kombu's Redis pool holds 10 connections by default: 64 greenlets acknowledging at once
    # ran out ("Couldn't ack … Too many connections") and acknowledged events went missing
    # (benchmarks/README.md); 200 was measured without a loss
    broker_transport_options={"max_connections": 200},
)

session = requests.Session()
session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=64))


@app.task(
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=common.MAX_ATTEMPTS - 1,
)
def deliver(event: dict[str, Any]) -> None:
    body, headers = common.signed_request(event)
    response = session.post(common.TARGET, data=body, headers=headers, timeout=10)
    response.raise_for_status()
