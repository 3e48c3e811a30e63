"""OpenTelemetry spans for ingest, routing and each delivery attempt (the optional extra
`switchboard[otel]`, switched on by SWITCHBOARD_OTEL_EXPORTER).

An ingest request continues the caller's `traceparent`; its events that carry no `trace_id` take
the request's trace id, so the caller, the hub and the receivers share one trace. A delivery
attempt's span is a child of the event's trace, and the webhook's `traceparent` names the
attempt's span, so the receiver continues from it. Each hub builds its own tracer provider (no
global state); without the setting nothing is imported and every call is a no-op.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from switchboard.config import Settings
from switchboard.errors import ConfigError
from switchboard.signing import traceparent

INSTALL = "pip install 'switchboard[otel]'"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(?!\n)$")


class Tracing:
    """The hub's tracer, or nothing when SWITCHBOARD_OTEL_EXPORTER is empty."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = bool(settings.otel_exporter)
        self._provider: Any = None
        self._tracer: Any = None
        if not self.enabled:
            return
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import (
                BatchSpanProcessor,
                ConsoleSpanExporter,
                SpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                f"SWITCHBOARD_OTEL_EXPORTER={settings.otel_exporter} needs OpenTelemetry: {INSTALL}"
            ) from exc
        exporter: SpanExporter
        if settings.otel_exporter == "console":
            exporter = ConsoleSpanExporter()
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError as exc:
                raise ConfigError(f"SWITCHBOARD_OTEL_EXPORTER=otlp needs {INSTALL}") from exc
            # without an endpoint the exporter reads the standard OTEL_EXPORTER_OTLP_* variables
            exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint or None)
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": settings.otel_service_name})
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("switchboard")

    @contextlib.contextmanager
    def ingest(self, headers: Mapping[str, str], tenant_id: str) -> Iterator[Any]:
        """A server span for one ingest request, continuing the caller's `traceparent`."""
        if not self.enabled:
            yield None
            return
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier = {k: v for k in ("traceparent", "tracestate") if (v := headers.get(k))}
        parent = TraceContextTextMapPropagator().extract(carrier)
        with self._tracer.start_as_current_span(
            "switchboard.ingest",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"switchboard.tenant_id": tenant_id},
        ) as span:
            yield span

    def trace_id(self, span: Any) -> str | None:
        """The span's trace id as 32 hex digits: the default `trace_id` of its events."""
        if span is None:
            return None
        return f"{span.get_span_context().trace_id:032x}"

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        """A child of the current span (routing inside an ingest request)."""
        if not self.enabled:
            yield None
            return
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    @contextlib.contextmanager
    def attempt(
        self, trace_id: str, parent: Any, **attributes: Any
    ) -> Iterator[tuple[Any, str | None]]:
        """A client span for one delivery attempt in the event's trace, under the ingest span
        that stored the event (`parent`, its `context.traceparent`) when it is of this trace;
        yields the span and the `traceparent` to send on (None when tracing is off)."""
        if not self.enabled:
            yield None, None
            return
        from opentelemetry import trace
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

        # else the ids the webhook's traceparent uses without tracing (signing.traceparent)
        _, trace_hex, parent_hex, _ = traceparent(trace_id).split("-")
        found = TRACEPARENT.match(parent.strip().lower()) if isinstance(parent, str) else None
        if found and found.group(1) == trace_hex:
            parent_hex = found.group(2)
        parent = trace.set_span_in_context(
            trace.NonRecordingSpan(
                SpanContext(
                    int(trace_hex, 16),
                    int(parent_hex, 16),
                    is_remote=True,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED),
                )
            )
        )
        with self._tracer.start_as_current_span(
            "switchboard.attempt",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={k: v for k, v in attributes.items() if v is not None},
        ) as span:
            ctx = span.get_span_context()
            yield span, f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"

    def flush(self, timeout_ms: int = 30_000) -> bool:
        """Export every ended span now (tests, shutdown)."""
        return bool(self._provider.force_flush(timeout_ms)) if self._provider else True

    def close(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
