"""The receiving pipeline of provider webhooks: verify → log → map → dedup → ingest.

`Inbound.receive` answers one request to ``POST /v1/sources/{id}/webhook``; `Inbound.reprocess`
runs a source's stored (verified) requests through another mapping version. Both produce events
through the one `Ingestor`, so the catalog validates them like any other event.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

import orjson

from switchboard.envelope import EnvelopeError, build_event, new_id, now_us
from switchboard.errors import BadRequest, StoreError
from switchboard.hub import Hub
from switchboard.signing import SignatureError, check_ip, mask_headers, verify
from switchboard.sources import Source
from switchboard.sources.dedup import Deduplicator
from switchboard.sources.leads import LeadMaker
from switchboard.sources.mappings import (
    LeadSpec,
    Mapping,
    MappingError,
    MappingLibrary,
    apply_mapping,
    parse_mapping,
)
from switchboard.sources.replies import Replies
from switchboard.store import Tenant
from switchboard.store import inbound as sql

__all__ = ["Inbound", "Outcome", "Reply", "Status", "decode_body"]

log = logging.getLogger("switchboard.sources")


# event type → (data field with the provider's message id, data field with its status)
RECEIPT_TYPES = {"whatsapp.message_ack": ("message_id", "status")}
RECEIPT_TYPES["whatsapp.message_status"] = ("message_id", "status")  # WhatsApp Cloud API
# receipts whose `failed` status marks the delivery dead with the provider's error
FAILURE_RECEIPTS = {"whatsapp.message_status"}
RECEIPT_TYPES["sms.status"] = ("message_sid", "status")  # the twilio-sms mapping
# a provider's status → the delivery's (the others, such as "sent", move nothing)
RECEIPT_STATUSES = {
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
    "undelivered": "failed",
}


class Status(StrEnum):
    PROCESSED = "processed"  # every event it produced is stored (new, duplicate or deduplicated)
    PARTIAL = "partial"  # some events stored, others rejected (catalog or mapping errors)
    REJECTED = "rejected"  # every event it produced was rejected; reprocess after a fix
    IGNORED = "ignored"  # no mapping rule matched (or the source has no mapping): logged only
    INVALID = "invalid"  # the body is neither JSON nor a form
    FAILED_VERIFICATION = "failed_verification"  # bad or missing signature/token (401)
    FORBIDDEN = "forbidden"  # the remote address is not in the source's allowlist (403)
    DISABLED = "disabled"  # the source is disabled (404)
    ERROR = "error"  # the hub failed (missing mapping version, store error)


_HTTP = {
    Status.PROCESSED: 200,
    Status.PARTIAL: 200,
    Status.IGNORED: 200,
    Status.REJECTED: 422,
    Status.INVALID: 400,
    Status.FAILED_VERIFICATION: 401,
    Status.FORBIDDEN: 403,
    Status.DISABLED: 404,
    Status.ERROR: 422,
}


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: dict[str, Any]


@dataclass
class Outcome:
    status: Status
    results: list[dict[str, Any]] = field(default_factory=list)  # per event: id, type, status
    events: list[dict[str, Any]] = field(default_factory=list)  # the native envelopes mapped
    errors: list[dict[str, str]] = field(default_factory=list)
    produced: int = 0  # newly stored events

    @property
    def event_ids(self) -> list[str]:
        return [r["id"] for r in self.results if r["status"] != "rejected" and r.get("id")]


def decode_body(body: bytes, content_type: str | None) -> Any:
    """A webhook body as data: JSON, or a form (``application/x-www-form-urlencoded``, the last
    value of a repeated field wins). Raises ValueError."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON ({exc}) nor a form") from None


def _error_reply(status: Status, code: str, message: str, request_id: str | None) -> Reply:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return Reply(_HTTP[status], body)


def _masked(source: Source, headers: dict[str, str]) -> dict[str, str]:
    """The request's headers for its log: credentials masked by name, the headers the source's
    preset reads its token or signature from, and any header carrying one of its secrets."""
    try:
        preset = source.verifier()
    except BadRequest:  # checked when stored; masking by name and secret still applies
        preset = None
    named: list[str] = list(preset.token_headers) if preset else []
    if preset and preset.hmac:
        named.append(preset.hmac.header)
    if preset and preset.kind == "twilio":
        named.append("x-twilio-signature")
    return mask_headers(headers, named, source.secrets)


class Inbound:
    def __init__(self, hub: Hub, library: MappingLibrary) -> None:
        self.hub = hub
        self.library = library
        self.unverified_kept = hub.settings.source_unverified_kept

    async def mapping(self, tenant_id: str, name: str, version: str | None) -> Mapping | None:
        """A shipped mapping or one of the tenant's own (they win on the same name+version)."""
        own: list[Mapping] = []
        for spec in await sql.tenant_mappings(self.hub.store, tenant_id, name):
            try:
                own.append(parse_mapping(spec, f"{name}@{spec.get('version')}"))
            except MappingError:
                continue  # validated when stored; a later parser change must not break receiving
        return self.library.get(name, version, own)

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self,
        source_id: str,
        headers: AbcMapping[str, str],
        body: bytes,
        remote_ip: str | None,
        url: str = "",
    ) -> Reply:
        """Verify, record and map one request to a source's public URL (`url`: the address it
        was sent to, for presets that sign it; the source's ``preset_config.url`` wins)."""
        store = self.hub.store
        source = await sql.get_source(store, source_id)
        if source is None:
            return _error_reply(Status.DISABLED, "not_found", "no source with this id", None)
        request_id = new_id()
        received = now_us()
        header_dict = dict(headers)
        req = sql.InboundRequest(
            id=request_id,
            tenant_id=source.tenant_id,
            source_id=source.id,
            received_us=received,
            remote_ip=remote_ip,
            headers=_masked(source, header_dict),
            content_type=header_dict.get("content-type"),
            body=body,
            verified=False,
            status=Status.ERROR,
        )
        if not source.enabled:
            await sql.record_request(
                store, _replace(req, status=Status.DISABLED), 0, self.unverified_kept
            )
            return _error_reply(Status.DISABLED, "not_found", "this source is disabled", request_id)
        try:
            check_ip(remote_ip or "", source.ip_allowlist)
            verify(
                source.verifier(),
                header_dict,
                body,
                source.secrets,
                now=received // 10**6,
                url=str(source.preset_config.get("url") or url),
            )
        except SignatureError as exc:
            status = (
                Status.FORBIDDEN if exc.reason == "ip_not_allowed" else Status.FAILED_VERIFICATION
            )
            await sql.record_request(
                store,
                _replace(req, status=status, verification_error=f"{exc.reason}: {exc}"),
                0,
                self.unverified_kept,
            )
            log.warning(
                "inbound verification failed",
                extra={
                    "action": "inbound_rejected",
                    "tenant_id": source.tenant_id,
                    "source_id": source.id,
                    "request_id": request_id,
                    "reason": exc.reason,
                },
            )
            code = "forbidden" if status is Status.FORBIDDEN else "signature_invalid"
            return _error_reply(status, code, f"{exc.reason}: {exc}", request_id)
        req = _replace(req, verified=True)
        try:
            outcome, ref = await self._process_for(source, req)
        except StoreError:
            raise
        except Exception as exc:
            log.exception(
                "inbound processing failed",
                extra={"action": "inbound_error", "source_id": source.id, "request_id": request_id},
            )
            await sql.record_request(
                store, _replace(req, status=Status.ERROR, error=repr(exc)[:500]), 0
            )
            return _error_reply(
                Status.ERROR,
                "processing_failed",
                "the hub failed to process this request; it is logged and can be reprocessed",
                request_id,
            )
        await sql.record_request(
            store,
            _replace(
                req,
                status=outcome.status,
                mapping=ref,
                event_ids=outcome.event_ids,
                error="; ".join(e["message"] for e in outcome.errors)[:2000] or None,
            ),
            outcome.produced,
        )
        log.info(
            "inbound processed",
            extra={
                "action": "inbound",
                "tenant_id": source.tenant_id,
                "source_id": source.id,
                "request_id": request_id,
                "status": str(outcome.status),
                "event_ids": outcome.event_ids[:50],
            },
        )
        reply: dict[str, Any] = {
            "request_id": request_id,
            "status": str(outcome.status),
            "events": outcome.results,
        }
        if outcome.errors:
            reply["errors"] = outcome.errors
        return Reply(_HTTP[outcome.status], reply)

    async def _process_for(
        self, source: Source, req: sql.InboundRequest
    ) -> tuple[Outcome, str | None]:
        tenant = await self.hub.tenant(source.tenant_id)
        if tenant is None:
            return Outcome(Status.ERROR, errors=[{"path": "", "message": "tenant is gone"}]), None
        if source.mapping is None:
            return Outcome(Status.IGNORED), None
        mapping = await self.mapping(tenant.id, source.mapping, source.mapping_version)
        if mapping is None:
            pin = f"{source.mapping}@{source.mapping_version or 'latest'}"
            return Outcome(
                Status.ERROR,
                errors=[{"path": "/mapping", "message": f"mapping {pin} does not exist"}],
            ), None
        outcome = await self.process(source, tenant, mapping, req, dry_run=False)
        return outcome, mapping.ref

    # -- mapping, dedup, ingest (shared by receive and reprocess) ---------------------------

    async def process(
        self,
        source: Source,
        tenant: Tenant,
        mapping: Mapping,
        req: sql.InboundRequest,
        *,
        dry_run: bool,
    ) -> Outcome:
        try:
            payload = decode_body(req.body, req.content_type)
        except ValueError as exc:
            return Outcome(Status.INVALID, errors=[{"path": "/", "message": str(exc)}])
        mapped = apply_mapping(mapping, payload, hashlib.sha256(req.body).hexdigest())
        if not mapped.events:
            status = Status.REJECTED if mapped.errors else Status.IGNORED
            return Outcome(status, errors=mapped.errors)
        dedup = Deduplicator(self.hub.store, tenant.id, now_us())
        claims: list[tuple[str, str, tuple[str, ...]]] = []  # (type, id, keys) to undo on reject
        for event in mapped.events:
            event["context"]["inbound_request_id"] = req.id
            spec = mapping.dedup.get(event["type"])
            if spec is None or not isinstance(event.get("data"), dict):
                continue
            verdict = await dedup.check(
                spec, str(event["id"]), event["data"], source.dedup_window, dry_run=dry_run
            )
            if verdict.duplicate_of is not None:
                event["context"]["duplicate_of"] = verdict.duplicate_of
            claims.append((event["type"], str(event["id"]), verdict.keys))
        # replies name the delivery they answer; those to a campaign message record its event
        replies = Replies(
            self.hub.store,
            self.hub.deliveries,
            self.hub.automations,
            self.hub.routes,
            tenant.id,
            now_us(),
        )
        campaigns = await replies.link(mapped.events)
        if dry_run:
            results = await self._validate(mapped.events, tenant, source)
        else:
            ingested = await self.hub.ingestor.ingest(mapped.events, tenant, source.event_source)
            results = []
            for event, res in zip(mapped.events, ingested.results, strict=True):
                out = {**res, "type": event["type"]}
                out.pop("index", None)
                if res["status"] == "accepted" and "duplicate_of" in event["context"]:
                    out["status"] = "deduplicated"
                    out["duplicate_of"] = event["context"]["duplicate_of"]
                results.append(out)
            await self._apply_receipts(tenant.id, mapped.events, results)
            rejected = {r.get("id") for r in results if r["status"] == "rejected"}
            for etype, eid, keys in claims:
                if eid in rejected:
                    await dedup.release(etype, eid, keys)
            if campaigns:
                more, more_results = await self._campaigns(
                    tenant, source, campaigns, mapped.events, results
                )
                mapped.events.extend(more)
                results.extend(more_results)
            if mapping.leads is not None:
                leads, lead_results = await self._leads(
                    mapping.leads, tenant, source, mapped.events, results
                )
                mapped.events.extend(leads)
                results.extend(lead_results)
        failed = sum(r["status"] == "rejected" for r in results) + len(mapped.errors)
        stored = len(results) - sum(r["status"] == "rejected" for r in results)
        if stored == 0:
            status = Status.REJECTED
        elif failed:
            status = Status.PARTIAL
        else:
            status = Status.PROCESSED
        produced = sum(r["status"] in ("accepted", "deduplicated") for r in results)
        return Outcome(status, results, mapped.events, mapped.errors, produced)

    async def _leads(
        self,
        spec: LeadSpec,
        tenant: Tenant,
        source: Source,
        events: list[dict[str, Any]],
        results: list[dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Lead events for the newly stored messages (see sources/leads.py), ingested."""
        maker = LeadMaker(self.hub.store, tenant.id, now_us())
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (message, lead)
        for event, res in zip(events, results, strict=True):
            if event["type"] == spec.type and res["status"] == "accepted":
                lead = await maker.lead_for(spec, event)
                if lead is not None:
                    pairs.append((event, lead))
        if not pairs:
            return [], []
        leads = [lead for _, lead in pairs]
        ingested = await self.hub.ingestor.ingest(
            [{**lead, "context": dict(lead["context"])} for lead in leads],
            tenant,
            source.event_source,
        )
        out: list[dict[str, Any]] = []
        for (message, lead), res in zip(pairs, ingested.results, strict=True):
            item = {**res, "type": lead["type"]}
            item.pop("index", None)
            out.append(item)
            if res["status"] == "accepted":
                await maker.remember(spec, message, lead)
            elif res["status"] == "rejected" and lead["type"] == spec.created:
                await maker.release(lead["id"], lead["data"]["phone"])
        return leads, out

    async def _campaigns(
        self,
        tenant: Tenant,
        source: Source,
        campaigns: list[tuple[int, dict[str, Any]]],
        events: list[dict[str, Any]],
        results: list[dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The campaign events of the replies newly stored (a duplicate reply records nothing
        new), ingested like any other event."""
        fresh = [c for i, c in campaigns if results[i]["status"] == "accepted"]
        if not fresh:
            return [], []
        ingested = await self.hub.ingestor.ingest(
            [{**c, "context": dict(c["context"])} for c in fresh], tenant, source.event_source
        )
        out = []
        for event, res in zip(fresh, ingested.results, strict=True):
            item = {**res, "type": event["type"]}
            item.pop("index", None)
            out.append(item)
        return fresh, out

    async def _apply_receipts(
        self, tenant_id: str, events: list[dict[str, Any]], results: list[dict[str, Any]]
    ) -> None:
        """Provider receipts (the WPP gateway's message.ack, Twilio's SMS status callbacks) move
        the delivery that sent the message to `delivered` / `read` / `failed` — forward only,
        however late or repeated they are."""
        for event, res in zip(events, results, strict=True):
            fields = RECEIPT_TYPES.get(event["type"])
            if fields is None or res["status"] != "accepted":
                continue
            data = event.get("data") or {}
            provider_id, status = data.get(fields[0]), data.get(fields[1])
            if provider_id and status == "failed" and event["type"] in FAILURE_RECEIPTS:
                error = " ".join(
                    str(data[k])
                    for k in ("error_code", "error_title", "error_message")
                    if data.get(k)
                )
                await self.hub.deliveries.provider_failed(
                    tenant_id, str(provider_id), f"provider: failed {error}".strip(), now_us()
                )
                continue
            ours = RECEIPT_STATUSES.get(status) if isinstance(status, str) else None
            if provider_id and ours:
                code = data.get("error_code")
                await self.hub.deliveries.provider_status(
                    tenant_id,
                    str(provider_id),
                    ours,
                    now_us(),
                    error=f"provider: {status}" + (f" (error {code})" if code else "")
                    if ours == "failed"
                    else None,
                )

    async def _validate(
        self, events: list[dict[str, Any]], tenant: Tenant, source: Source
    ) -> list[dict[str, Any]]:
        """What ingest would answer, without writing: envelope, catalog and event-id checks."""
        results: list[dict[str, Any]] = []
        for raw in events:
            out: dict[str, Any] = {"id": raw.get("id"), "type": raw.get("type")}
            try:
                event = build_event(
                    raw,
                    tenant_id=tenant.id,
                    default_source=source.event_source,
                    received_us=now_us(),
                )
            except EnvelopeError as exc:
                results.append({**out, "status": "rejected", "errors": exc.errors})
                continue
            verdict = await self.hub.registry.validate(event, tenant.unknown_types)
            if verdict.status == "rejected":
                results.append({**out, "status": "rejected", "errors": verdict.errors})
            elif await self.hub.store.get_event(tenant.id, event.id, event.source) is not None:
                results.append({**out, "status": "duplicate"})
            elif "duplicate_of" in event.context:
                results.append(
                    {**out, "status": "deduplicated", "duplicate_of": event.context["duplicate_of"]}
                )
            else:
                results.append({**out, "status": "accepted", "validation": verdict.status})
        return results

    # -- reprocessing -------------------------------------------------------------------------

    async def reprocess(
        self,
        source: Source,
        tenant: Tenant,
        mapping: Mapping,
        *,
        from_us: int | None,
        to_us: int | None,
        dry_run: bool,
        limit: int = 10_000,
        samples: int = 5,
    ) -> dict[str, Any]:
        """Run stored verified requests through `mapping`; counts and a few sample events.

        Event ids come from the provider, so events already stored answer as duplicates and
        running it twice stores nothing new.
        """
        counts = {
            "requests": 0,
            "events": 0,
            "accepted": 0,
            "duplicate": 0,
            "deduplicated": 0,
            "rejected": 0,
            "ignored_requests": 0,
            "invalid_requests": 0,
        }
        sample: list[dict[str, Any]] = []
        after: str | None = None
        while counts["requests"] < limit:
            page = await sql.verified_requests(
                self.hub.store,
                tenant.id,
                source.id,
                from_us=from_us,
                to_us=to_us,
                after_id=after,
                limit=min(200, limit - counts["requests"]),
            )
            if not page:
                break
            for req in page:
                after = req.id
                counts["requests"] += 1
                outcome = await self.process(source, tenant, mapping, req, dry_run=dry_run)
                if outcome.status is Status.IGNORED:
                    counts["ignored_requests"] += 1
                elif outcome.status is Status.INVALID:
                    counts["invalid_requests"] += 1
                counts["events"] += len(outcome.results)
                for res, event in zip(outcome.results, outcome.events, strict=False):
                    counts[res["status"]] = counts.get(res["status"], 0) + 1
                    if len(sample) < samples:
                        sample.append({"request_id": req.id, "result": res, "event": event})
                if not dry_run and outcome.status not in (Status.INVALID,):
                    await sql.update_request_outcome(
                        self.hub.store, req.id, outcome.status, outcome.event_ids, mapping.ref
                    )
                    await sql.add_events_produced(self.hub.store, source.id, outcome.produced)
        log.info(
            "inbound reprocessed",
            extra={
                "action": "inbound_reprocess",
                "tenant_id": tenant.id,
                "source_id": source.id,
                "mapping": mapping.ref,
                "dry_run": dry_run,
                **counts,
            },
        )
        return {"mapping": mapping.ref, "dry_run": dry_run, "counts": counts, "samples": sample}
