/**
 * The client: `emit` business events without waiting on the network.
 *
 * `emit` encodes the event and puts it in an in-memory queue; one sender loop POSTs the queue to
 * `/v1/events` in batches and retries transient failures with backoff. It mirrors the Python SDK
 * (src/switchboard/client.py): the same batching, the same answers to each status, the same
 * counters. Only `fetch` and timers are used, so it runs on Node >= 18, edge runtimes and
 * browsers.
 */

import type { BaseEvent, BaseEventInput, ClinicEvent } from "./adapters.js";
import { prepareBaseEvent, prepareClinicEvent } from "./adapters.js";
import { describe, errorDetails, isPlainObject, toTime, unknownFields, utf8Length } from "./encode.js";
import { classify, parseRetryAfter, retryDelay } from "./retry.js";
import {
  type AnyEvents,
  type ClientOptions,
  type ClientStats,
  type EmitOptions,
  type ErrorCode,
  type EventTypes,
  type FetchLike,
  MAX_BATCH_EVENTS,
  MAX_BODY_BYTES,
  type NativeEvent,
  SwitchboardError,
} from "./types.js";
import { uuidv7 } from "./uuid.js";

interface Queued {
  id: string;
  type: string;
  body: string; // the JSON event, encoded once at emit time
  bytes: number; // its UTF-8 length
}

interface Answer {
  status?: number; // undefined: no HTTP answer (refused, reset, timed out)
  body: string;
  retryAfterMs?: number;
  error: string; // why there was no answer
}

interface Waiter {
  target: number;
  resolve: () => void;
}

interface ProcessLike {
  on(event: "beforeExit", listener: () => void): unknown;
  off(event: "beforeExit", listener: () => void): unknown;
  versions?: { node?: string };
}

/** A timer that never keeps a Node process alive by itself (the beforeExit hook flushes). */
function unrefTimer(callback: () => void, ms: number): unknown {
  const handle: unknown = setTimeout(callback, ms);
  if (typeof handle === "object" && handle !== null && "unref" in handle) {
    (handle as { unref(): void }).unref();
  }
  return handle;
}

function clearTimer(handle: unknown): void {
  clearTimeout(handle as ReturnType<typeof setTimeout>);
}

function defaultOnError(error: SwitchboardError): void {
  const ids = error.eventIds.length ? ` (${error.eventIds.length} event(s), first ${error.eventIds[0]})` : "";
  console.warn(`switchboard: ${error.code}: ${error.message}${ids}`);
}

/**
 * Queue events with `emit` and send them in the background; see docs/sdk.md.
 *
 * `E` maps each event type to its data (the `Events` interface `switchboard catalog codegen
 * --lang typescript` writes); with it, `emit` refuses unknown types and wrong fields at compile
 * time. Without it, any type and any object are accepted.
 */
export class Client<E extends EventTypes<E> = AnyEvents> {
  private readonly endpoint: string;
  private readonly headers: Record<string, string>;
  private readonly source: string | undefined;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxQueue: number;
  private readonly maxRetries: number;
  private readonly timeoutMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly onError: (error: SwitchboardError) => void;
  private readonly fetch: FetchLike;
  private readonly exitTimeoutMs: number;
  private readonly counters: ClientStats = {
    queued: 0,
    sent: 0,
    rejected: 0,
    dropped: 0,
    failed: 0,
    retries: 0,
    errors: 0,
  };
  private queue: Queued[] = [];
  private settled = 0; // events whose fate is known (sent, rejected or failed)
  private waiters: Waiter[] = [];
  private wake: (() => void) | undefined; // resolves the sender's current pause
  private sender: Promise<void> | undefined;
  private closing = false;
  private stopped = false; // close timed out: abandon what is in flight
  private inflight: AbortController | undefined;
  private dropping: ErrorCode | undefined; // inside a run of drops: report its first one only
  private readonly process: ProcessLike | undefined;
  private readonly exitListener = (): void => {
    this.detachExit();
    void this.close(this.exitTimeoutMs);
  };

  constructor(options: ClientOptions) {
    const url = options.url;
    if (typeof url !== "string" || !/^https?:\/\//.test(url)) {
      throw new TypeError(`url must start with http:// or https://, not ${JSON.stringify(url)}`);
    }
    if (!options.apiKey) throw new TypeError("apiKey is empty");
    this.batchSize = options.batchSize ?? 100;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1 || this.batchSize > MAX_BATCH_EVENTS) {
      throw new RangeError(`batchSize must be an integer within 1..${MAX_BATCH_EVENTS}`);
    }
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.maxRetries = options.maxRetries ?? 8;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.backoffBaseMs = options.backoffBaseMs ?? 500;
    this.backoffMaxMs = options.backoffMaxMs ?? 30_000;
    this.exitTimeoutMs = options.exitTimeoutMs ?? 2_000;
    if (
      !(this.maxQueue >= 1) ||
      !(this.maxRetries >= 0) ||
      !(this.timeoutMs > 0) ||
      !(this.flushIntervalMs >= 0) ||
      !(this.backoffBaseMs >= 0) ||
      !(this.backoffMaxMs >= 0) ||
      !(this.exitTimeoutMs >= 0)
    ) {
      throw new RangeError("maxQueue >= 1, maxRetries >= 0, timeoutMs > 0, the other durations >= 0");
    }
    const fetchImpl = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (typeof fetchImpl !== "function") {
      throw new TypeError("no fetch in this runtime: pass options.fetch");
    }
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.endpoint = url.replace(/\/+$/, "") + "/v1/events";
    // The key lives only in this header object: never in an error, a message or a field.
    this.headers = { Authorization: `Bearer ${options.apiKey}`, "Content-Type": "application/json" };
    this.source = options.source;
    this.onError = options.onError ?? defaultOnError;
    const proc = (globalThis as { process?: ProcessLike }).process;
    this.process = proc?.versions?.node && typeof proc.on === "function" ? proc : undefined;
    if (this.process && this.exitTimeoutMs > 0) this.process.on("beforeExit", this.exitListener);
  }

  /** A snapshot of the counters. */
  get stats(): ClientStats {
    return { ...this.counters };
  }

  /**
   * Queue one event and return its id at once; the network is never awaited and nothing is
   * thrown. `emit(type, data, options?)` or `emit({type, data, ...options})`. An event that
   * cannot be sent (not JSON, over 1 MiB, a wrong argument) or finds the queue full is dropped,
   * counted and reported to `onError`.
   */
  emit<K extends keyof E & string>(type: K, data: E[K], options?: EmitOptions): string;
  emit<K extends keyof E & string>(event: NativeEvent<K, E[K]>): string;
  emit(first: unknown, data?: unknown, options?: EmitOptions): string {
    let fields: Record<string, unknown>;
    if (isPlainObject(first)) {
      const { type, data: eventData, ...envelope } = first;
      fields = envelope;
      first = type;
      data = eventData;
    } else {
      fields = isPlainObject(options) ? { ...options } : {};
    }
    const id = typeof fields["id"] === "string" || typeof fields["id"] === "number" ? String(fields["id"]) : uuidv7();
    const type = typeof first === "string" ? first : "";
    const problem =
      typeof first !== "string" || first === ""
        ? `event type must be a non-empty string, not ${describe(first)}`
        : !isPlainObject(data)
          ? `event data must be an object, not ${describe(data)}`
          : unknownFields(fields);
    if (problem) {
      this.invalid(id, type, problem);
      return id;
    }
    const event: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null) event[key] = value;
    }
    event["id"] = id;
    event["type"] = type;
    event["data"] = data;
    event["time"] = toTime(event["time"]);
    if (event["source"] === undefined && this.source !== undefined) event["source"] = this.source;
    this.encodeAndQueue(id, type, event);
    return id;
  }

  /**
   * The clinic checklist's `emitEvent({eventType, actor, clinicId, customerId?, timestamp?,
   * eventId?, metadata})`: sent in that shape, which the hub maps onto its envelope (docs/sdk.md
   * has the table). Fills `eventId` (a UUIDv7) and `timestamp` (now) when absent; returns the id.
   */
  emitEvent<K extends keyof E & string>(input: ClinicEvent<K, E[K]>): string {
    const prepared = prepareClinicEvent(input, this.source);
    if (typeof prepared === "string") {
      const id = isPlainObject(input) && typeof input.eventId === "string" ? input.eventId : uuidv7();
      this.invalid(id, "", prepared);
      return id;
    }
    this.encodeAndQueue(prepared.id, prepared.type, prepared.wire);
    return prepared.id;
  }

  /**
   * The legal-practice plan's `publishEvent(event)` with its `BaseEvent`: sent in that shape,
   * which the hub maps onto its envelope. Fills `eventId` (a UUIDv7) and `timestamp` (now) as the
   * plan's publisher did, and returns the full BaseEvent at once (no await needed).
   */
  publishEvent<K extends keyof E & string>(event: BaseEventInput<K, E[K]>): BaseEvent<K, E[K]> {
    const prepared = prepareBaseEvent(event, this.source);
    if (typeof prepared === "string") {
      const id = isPlainObject(event) && typeof event.eventId === "string" ? event.eventId : uuidv7();
      this.invalid(id, "", prepared);
      const given = event as BaseEventInput<K, E[K]>;
      return { ...given, metadata: given.metadata ?? {}, eventId: id, timestamp: new Date(), processed: false, retryCount: 0 };
    }
    this.encodeAndQueue(prepared.id, prepared.type, prepared.wire);
    return prepared.full as unknown as BaseEvent<K, E[K]>;
  }

  /**
   * Wait until every event emitted so far was sent, rejected or given up, or `timeoutMs` passed.
   * Never rejects: on timeout the events stay queued; compare `stats` to know more.
   */
  flush(timeoutMs?: number): Promise<void> {
    const target = this.counters.queued;
    if (this.settled >= target) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: unknown;
      const waiter: Waiter = {
        target,
        resolve: () => {
          if (timer !== undefined) clearTimer(timer);
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve();
        },
      };
      this.waiters.push(waiter);
      if (timeoutMs !== undefined) {
        // A timer the process waits for: a flush at the end of a script must get its chance.
        timer = setTimeout(waiter.resolve, timeoutMs);
      }
      this.ensureSender();
      this.wakeSender();
    });
  }

  /**
   * Flush, then stop the sender. With a timeout, events still unsent when it expires are counted
   * as failed and reported (`unsent_at_close`). Later emits are dropped. Never rejects.
   */
  async close(timeoutMs?: number): Promise<void> {
    if (this.closing) {
      await this.sender;
      return;
    }
    this.detachExit();
    await this.flush(timeoutMs);
    this.closing = true;
    if (this.settled < this.counters.queued) {
      this.stopped = true; // give up what is in flight or waiting for a retry
      this.inflight?.abort();
      this.stopWait?.();
    }
    this.wakeSender();
    await this.sender;
    const pending = this.counters.queued - this.settled;
    if (pending > 0) {
      const ids = this.queue.map((e) => e.id);
      this.queue = [];
      this.settle(pending, "failed");
      this.report(new SwitchboardError("unsent_at_close", `closed with ${pending} event(s) unsent`, ids));
    }
  }

  // -- queue ---------------------------------------------------------------------------------

  private encodeAndQueue(id: string, type: string, event: Record<string, unknown>): void {
    let body: string;
    try {
      body = JSON.stringify(event);
    } catch (error) {
      this.invalid(id, type, `event ${type} cannot be encoded as JSON: ${String(error)}`);
      return;
    }
    const bytes = utf8Length(body);
    if (bytes > MAX_BODY_BYTES - 2) {
      this.invalid(id, type, `event ${type} is ${bytes} bytes encoded; the limit is 1 MiB`);
      return;
    }
    this.enqueue({ id, type, body, bytes });
  }

  private invalid(id: string, type: string, message: string): void {
    this.counters.dropped += 1;
    this.report(new SwitchboardError("invalid_event", message, [id]));
  }

  private enqueue(event: Queued): void {
    if (this.closing || this.queue.length >= this.maxQueue) {
      this.counters.dropped += 1;
      const code = this.closing ? "closed" : "queue_full";
      if (this.dropping !== code) {
        this.dropping = code;
        const why = this.closing ? "the client is closed" : `${this.maxQueue} events are waiting`;
        this.report(new SwitchboardError(code, `event dropped (${why}); further drops are only counted`, [event.id]));
      }
      return;
    }
    this.dropping = undefined;
    this.queue.push(event);
    this.counters.queued += 1;
    this.ensureSender();
    if (this.queue.length >= this.batchSize) this.wakeSender();
  }

  private report(error: SwitchboardError): void {
    this.counters.errors += 1;
    try {
      this.onError(error);
    } catch {
      // an error hook that throws must not break the sender or the caller
    }
  }

  private settle(count: number, outcome: "sent" | "rejected" | "failed"): void {
    this.counters[outcome] += count;
    this.settled += count;
    for (const waiter of [...this.waiters]) {
      if (waiter.target <= this.settled) waiter.resolve();
    }
  }

  private takeBatch(): Queued[] {
    let size = 2; // the brackets
    let n = 0;
    while (n < this.queue.length && n < this.batchSize) {
      const grown = size + this.queue[n]!.bytes + (n > 0 ? 1 : 0);
      if (n > 0 && grown > MAX_BODY_BYTES) break;
      size = grown;
      n += 1;
    }
    return this.queue.splice(0, n);
  }

  // -- sender --------------------------------------------------------------------------------

  private ensureSender(): void {
    if (this.sender === undefined) {
      this.sender = this.run().finally(() => {
        this.sender = undefined;
        if (this.queue.length > 0 && !this.stopped) this.ensureSender();
      });
    }
  }

  private wakeSender(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private urgent(): boolean {
    return this.closing || this.waiters.length > 0;
  }

  /** Resolve after `ms`, or sooner when woken (emit filled a batch, flush, close). */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = unrefTimer(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimer(timer);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    while (this.queue.length > 0 && !this.stopped) {
      const deadline = Date.now() + this.flushIntervalMs;
      while (this.queue.length < this.batchSize && !this.urgent() && !this.stopped) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        await this.pause(remaining);
      }
      if (this.stopped) return;
      const batch = this.takeBatch();
      const settledBefore = this.settled;
      try {
        await this.deliver(batch);
      } catch (error) {
        // one bad batch must not stop the sender for the whole process
        const left = batch.length - (this.settled - settledBefore);
        if (left > 0 && !this.stopped) {
          this.settle(left, "failed");
          this.report(new SwitchboardError("gave_up", `sender failed: ${String(error)}`, batch.map((e) => e.id)));
        }
      }
      if (this.stopped) {
        // close() counts whatever was not settled; put the batch back so it is reported
        const settledNow = this.settled - settledBefore;
        if (settledNow < batch.length) this.queue.unshift(...batch.slice(settledNow));
        return;
      }
    }
  }

  private async deliver(batch: Queued[]): Promise<void> {
    const body = "[" + batch.map((e) => e.body).join(",") + "]";
    const ids = (): string[] => batch.map((e) => e.id);
    for (let attempt = 0; ; ) {
      const answer = await this.post(body);
      if (this.stopped) return;
      const outcome = classify(answer.status, batch.length);
      if (outcome === "results") {
        this.applyResults(batch, answer);
        return;
      }
      if (outcome === "split") {
        const half = Math.floor(batch.length / 2);
        await this.deliver(batch.slice(0, half));
        if (this.stopped) return;
        await this.deliver(batch.slice(half));
        return;
      }
      if (outcome === "fail") {
        this.settle(batch.length, "failed");
        this.report(
          new SwitchboardError(
            "batch_failed",
            `hub refused a batch of ${batch.length} with HTTP ${answer.status}: ${answer.body.slice(0, 1000)}`,
            ids(),
            answer.status,
            errorDetails(answer.body),
          ),
        );
        return;
      }
      const reason = answer.error || `HTTP ${answer.status}`;
      if (attempt >= this.maxRetries) {
        this.settle(batch.length, "failed");
        this.report(
          new SwitchboardError(
            "gave_up",
            `gave up on a batch of ${batch.length} after ${attempt} retries: ${reason}`,
            ids(),
            answer.status,
          ),
        );
        return;
      }
      const delay = retryDelay(attempt, this.backoffBaseMs, this.backoffMaxMs, answer.retryAfterMs);
      attempt += 1;
      this.counters.retries += 1;
      // The wait is not cut short by flush: Retry-After is the hub's request, and backoff is
      // what keeps many clients from hammering a hub that is coming back.
      await new Promise<void>((resolve) => {
        const timer = unrefTimer(resolve, delay);
        this.stopWait = () => {
          clearTimer(timer);
          resolve();
        };
      });
      this.stopWait = undefined;
      if (this.stopped) return;
    }
  }

  private stopWait: (() => void) | undefined;

  private async post(body: string): Promise<Answer> {
    const controller = new AbortController();
    this.inflight = controller;
    const timer = unrefTimer(() => controller.abort(), this.timeoutMs);
    try {
      const response = await this.fetch(this.endpoint, {
        method: "POST",
        headers: this.headers,
        body,
        signal: controller.signal,
      });
      const text = await response.text();
      return {
        status: response.status,
        body: text,
        retryAfterMs: parseRetryAfter(response.headers.get("Retry-After")),
        error: "",
      };
    } catch (error) {
      const cause = error instanceof Error && error.cause !== undefined ? ` (${String(error.cause)})` : "";
      const why = controller.signal.aborted && !this.stopped ? `timed out after ${this.timeoutMs} ms` : `${String(error)}${cause}`;
      return { body: "", error: why };
    } finally {
      clearTimer(timer);
      this.inflight = undefined;
    }
  }

  private applyResults(batch: Queued[], answer: Answer): void {
    let results: Map<number, Record<string, unknown>>;
    try {
      const payload: unknown = JSON.parse(answer.body);
      const list = isPlainObject(payload) ? payload["results"] : undefined;
      if (!Array.isArray(list)) throw new TypeError("no results");
      results = new Map();
      for (const r of list) {
        if (isPlainObject(r) && typeof r["index"] === "number") results.set(r["index"], r);
      }
    } catch {
      // A 2xx means the hub took the request; anything else cannot be trusted as sent.
      const ok = answer.status !== undefined && answer.status < 300;
      this.settle(batch.length, ok ? "sent" : "failed");
      if (!ok) {
        this.report(
          new SwitchboardError(
            "batch_failed",
            `HTTP ${answer.status} without per-event results: ${answer.body.slice(0, 1000)}`,
            batch.map((e) => e.id),
            answer.status,
          ),
        );
      }
      return;
    }
    // An index missing from the results takes the request's verdict: 2xx took it, 422 did not.
    const missing: Record<string, unknown> = { status: answer.status === 422 ? "rejected" : "accepted" };
    batch.forEach((event, index) => {
      const result = results.get(index) ?? missing;
      if (result["status"] !== "rejected") {
        this.settle(1, "sent"); // accepted, duplicate, or newer wording
        return;
      }
      const details = Array.isArray(result["errors"]) ? (result["errors"] as { path?: string; message?: string }[]) : [];
      const where = details.map((d) => `${d.path ?? ""}: ${d.message ?? ""}`).join("; ");
      this.settle(1, "rejected");
      this.report(
        new SwitchboardError("rejected", `event ${event.id} (${event.type}) rejected: ${where}`, [event.id], answer.status, details),
      );
    });
  }

  private detachExit(): void {
    this.process?.off("beforeExit", this.exitListener);
  }
}
