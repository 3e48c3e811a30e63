/**
 * The seed systems' own event shapes. The hub accepts both natively (src/switchboard/envelope.py
 * maps them onto its envelope), so the adapters send them as they are: one mapping, the hub's,
 * and an event emitted here is stored exactly as the same object POSTed by any other client.
 * The adapters only fill what the old helpers filled (an id and the time) and the client's
 * default source.
 */

import { uuidv7 } from "./uuid.js";

/** The clinic's `EventActor`: a kind of actor, not an id (the hub takes the id from the kind). */
export type ClinicActor = "clinic" | "system" | "customer" | "ai";

/**
 * The arguments of the clinic checklist's `emitEvent({...})`. The hub maps them as: `eventType`
 * → type, `metadata` → data, `customerId` → subject, `clinicId` → context.clinic_id, `actor` →
 * actor.type (actor.id is the clinicId for "clinic", the customerId for "customer"),
 * `timestamp` → time, `eventId` → id.
 */
export interface ClinicEvent<K extends string = string, M = Record<string, unknown>> {
  eventType: K;
  actor: ClinicActor;
  clinicId: string;
  customerId?: string | null;
  /** When it happened; default: the moment of emitEvent. */
  timestamp?: Date | string;
  /** An external idempotency key (a webhook's id); default: a UUIDv7. */
  eventId?: string;
  metadata: M;
  version?: string;
  source?: string;
  context?: Record<string, unknown>;
  trace_id?: string;
  correlation_id?: string;
  causation_id?: string;
}

/** The legal-practice plan's `EventMetadata`; every key lands in the event's context. */
export interface EventMetadata {
  ipAddress?: string;
  userAgent?: string;
  requestId?: string;
  /** The event's source, unless the event names one itself. */
  source?: string;
  environment?: string;
  [key: string]: unknown;
}

/**
 * The legal-practice plan's `BaseEvent`. The hub maps: `eventId` → id, `eventType` → type,
 * `eventVersion` → version, `timestamp` → time, `actor`/`actorType` → actor, `organizationId` →
 * subject and context.organization_id, `payload` → data, `metadata` → context (ipAddress → ip,
 * userAgent → user_agent, requestId → request_id) and `metadata.source` → source.
 * `processed` and `retryCount` were the old table's processing state; the hub ignores them.
 */
export interface BaseEvent<K extends string = string, P = Record<string, unknown>> {
  eventId: string;
  eventType: K;
  eventVersion: string;
  timestamp: Date;
  actor?: string;
  actorType?: string;
  organizationId?: string;
  payload: P;
  metadata: EventMetadata;
  processed: boolean;
  retryCount: number;
}

/** What `publishEvent` takes: the plan's input (`eventId` and `timestamp` may be given). */
export type BaseEventInput<K extends string = string, P = Record<string, unknown>> = Omit<
  BaseEvent<K, P>,
  "eventId" | "timestamp" | "processed" | "retryCount" | "metadata"
> & {
  eventId?: string;
  timestamp?: Date | string;
  metadata?: EventMetadata;
  source?: string;
  trace_id?: string;
  correlation_id?: string;
  causation_id?: string;
  processed?: boolean;
  retryCount?: number;
};

export interface Prepared {
  id: string;
  type: string;
  wire: Record<string, unknown>; // what is sent, in the seed's own shape
  full: Record<string, unknown>; // what the adapter hands back to the caller
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function idOf(value: unknown): string | undefined {
  if (typeof value === "string" && value !== "") return value;
  return typeof value === "number" ? String(value) : undefined;
}

/** The clinic shape, ready to send; a string says why it cannot be. */
export function prepareClinicEvent(input: unknown, defaultSource?: string): Prepared | string {
  if (!isObject(input)) return "emitEvent takes an object {eventType, actor, clinicId, metadata, ...}";
  const type = input["eventType"];
  if (typeof type !== "string" || type === "") return "emitEvent: eventType must be a non-empty string";
  if ("type" in input || "payload" in input) {
    // either key would make the hub read another shape than the clinic's
    return "emitEvent: the clinic shape has no `type` or `payload` field (use emit or publishEvent)";
  }
  const id = idOf(input["eventId"]) ?? uuidv7();
  const wire: Record<string, unknown> = { ...input, eventId: id };
  wire["timestamp"] = toWireTime(input["timestamp"]);
  if (wire["source"] == null && defaultSource !== undefined) wire["source"] = defaultSource;
  return { id, type, wire, full: wire };
}

/** The legal BaseEvent, ready to send; a string says why it cannot be. */
export function prepareBaseEvent(input: unknown, defaultSource?: string): Prepared | string {
  if (!isObject(input)) return "publishEvent takes a BaseEvent object {eventType, payload, metadata, ...}";
  const type = input["eventType"];
  if (typeof type !== "string" || type === "") return "publishEvent: eventType must be a non-empty string";
  if (!isObject(input["payload"])) {
    // without a payload the hub would read the clinic's shape instead
    return "publishEvent: payload must be an object";
  }
  if ("type" in input) return "publishEvent: a BaseEvent has no `type` field (use eventType)";
  const metadata = input["metadata"];
  if (metadata != null && !isObject(metadata)) return "publishEvent: metadata must be an object";
  const id = idOf(input["eventId"]) ?? uuidv7();
  const timestamp = input["timestamp"];
  const { processed: _processed, retryCount: _retryCount, ...rest } = input;
  const wire: Record<string, unknown> = { ...rest, eventId: id, timestamp: toWireTime(timestamp) };
  if (wire["source"] == null && metadata?.["source"] == null && defaultSource !== undefined) {
    wire["source"] = defaultSource;
  }
  const full = {
    ...input,
    eventId: id,
    metadata: metadata ?? {},
    timestamp: timestamp instanceof Date ? timestamp : timestamp == null ? new Date(wire["timestamp"] as string) : new Date(String(timestamp)),
    processed: input["processed"] ?? false,
    retryCount: input["retryCount"] ?? 0,
  };
  return { id, type, wire, full };
}

/** ISO 8601 in UTC for a Date or nothing (now); a string is the caller's, checked by the hub. */
function toWireTime(value: unknown): unknown {
  if (value == null) return new Date().toISOString();
  return value instanceof Date ? value.toISOString() : value;
}
