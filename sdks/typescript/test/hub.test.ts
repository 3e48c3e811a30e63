/**
 * The SDK against a real hub (`switchboard serve` on 127.0.0.1, SQLite or PostgreSQL as the
 * pytest wrapper chose): batching, retries across a restart, a lost answer, Retry-After, the
 * seeds' shapes stored exactly as the hub's native handling stores them, and the promises of
 * emit, flush and close.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Client, SwitchboardError, uuidv7Time } from "../dist/index.js";
import {
  AnswerEater,
  type Exchange,
  freePort,
  Hub,
  postRaw,
  recordingFetch,
  storedEvent,
  storedEvents,
  testEnv,
  waitFor,
} from "./helpers.js";

const env = testEnv();
let hub: Hub;
let limited: Hub; // 1 event per second per key, a burst of 2
const clients: Client[] = [];

before(async () => {
  [hub, limited] = await Promise.all([
    Hub.start(env),
    Hub.start(env, { SWITCHBOARD_KEY_RATE: "1", SWITCHBOARD_KEY_BURST: "2" }),
  ]);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close(100)));
  await Promise.all([hub, limited].map((h) => h?.kill()));
});

/** A client for the tests: fast timers, errors collected instead of printed. */
function client(options: Partial<ConstructorParameters<typeof Client>[0]> = {}, errors: SwitchboardError[] = []): Client {
  const c = new Client({
    url: hub.url,
    apiKey: env.key,
    flushIntervalMs: 20,
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    exitTimeoutMs: 0,
    onError: (e) => errors.push(e),
    ...options,
  });
  clients.push(c);
  return c;
}

let types = 0;
/** An event type no other test uses, so listing it shows exactly this test's events. */
function freshType(what: string): string {
  return `sdk.${what}.${env.backend}${process.pid}x${types++}`;
}

function countIds(events: Record<string, unknown>[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of events) counts.set(String(e["id"]), (counts.get(String(e["id"])) ?? 0) + 1);
  return counts;
}

test("events go out in batches of batchSize, and a partial batch after flushIntervalMs", async () => {
  const log: Exchange[] = [];
  const c = client({ batchSize: 100, flushIntervalMs: 50, fetch: recordingFetch(log) });
  const type = freshType("batch");
  const ids = Array.from({ length: 250 }, (_, n) => c.emit(type, { n }));
  await c.flush();
  assert.deepEqual(
    log.map((x) => x.events),
    [100, 100, 50],
  );
  const stored = await storedEvents(hub.url, env.key, type);
  assert.deepEqual(new Set(stored.map((e) => e["id"])), new Set(ids));
  assert.equal(stored.length, 250);
  // without a flush, the interval alone sends what is queued
  const more = [c.emit(type, { n: 250 }), c.emit(type, { n: 251 })];
  await waitFor(async () => (await storedEvents(hub.url, env.key, type)).length === 252, 10_000, "the partial batch");
  assert.deepEqual(log.slice(3).map((x) => x.events), [2]);
  assert.deepEqual(c.stats, { queued: 252, sent: 252, rejected: 0, dropped: 0, failed: 0, retries: 0, errors: 0 });
  assert.ok(more.every((id) => uuidv7Time(id) !== undefined));
});

test("a hub killed and restarted: the emitted events are stored once each, none lost", async () => {
  const own = hub;
  const c = client({ url: own.url, batchSize: 10, maxRetries: 100 });
  const type = freshType("restart");
  const ids = Array.from({ length: 20 }, (_, n) => c.emit(type, { n }));
  await c.flush();
  await own.kill();
  ids.push(...Array.from({ length: 30 }, (_, n) => c.emit(type, { n: 20 + n })));
  await waitFor(() => c.stats.retries >= 2, 10_000, "the client to retry against the dead hub");
  assert.equal(c.stats.sent, 20);
  await own.start(); // same port, same database
  await c.flush();
  assert.deepEqual(c.stats, { queued: 50, sent: 50, rejected: 0, dropped: 0, failed: 0, retries: c.stats.retries, errors: 0 });
  const counts = countIds(await storedEvents(own.url, env.key, type));
  assert.equal(counts.size, 50);
  assert.deepEqual(new Set(counts.keys()), new Set(ids));
  assert.ok([...counts.values()].every((n) => n === 1));
});

test("an answer lost after the hub stored the batch: the retry is a duplicate, stored once", async () => {
  const eater = new AnswerEater(hub.port);
  await eater.start();
  try {
    const c = client({ url: `http://127.0.0.1:${eater.port}`, batchSize: 5 });
    const type = freshType("lost");
    eater.swallowNext = true;
    const ids = Array.from({ length: 5 }, (_, n) => c.emit(type, { n }));
    await c.flush();
    assert.deepEqual(eater.swallowed.map((line) => line.split(" ")[1]), ["202"]); // it was stored
    assert.ok(c.stats.retries >= 1);
    assert.equal(c.stats.sent, 5);
    const counts = countIds(await storedEvents(hub.url, env.key, type));
    assert.deepEqual([...counts.keys()].sort(), [...ids].sort());
    assert.ok([...counts.values()].every((n) => n === 1));
  } finally {
    await eater.close();
  }
});

test("a 429 from a rate-limited key: the client waits Retry-After before trying again", async () => {
  // 1 event per second, a burst of 2: the second batch of 2 right after the first is refused
  const log: Exchange[] = [];
  const c = client({ url: limited.url, batchSize: 2, backoffBaseMs: 1, backoffMaxMs: 5, fetch: recordingFetch(log) });
  const type = freshType("ratelimit");
  const ids = [c.emit(type, { n: 0 }), c.emit(type, { n: 1 })];
  await c.flush();
  ids.push(c.emit(type, { n: 2 }), c.emit(type, { n: 3 }));
  await c.flush();
  const refused = log.findIndex((x) => x.status === 429);
  assert.ok(refused > 0, `no 429 in ${JSON.stringify(log)}`);
  const retryAfter = Number(log[refused]!.retryAfter);
  assert.ok(retryAfter >= 1, `Retry-After ${log[refused]!.retryAfter}`);
  const next = log[refused + 1]!;
  // the backoff alone would have waited at most 5 ms; the hub asked for seconds
  assert.ok(next.started - log[refused]!.ended >= retryAfter * 1000 - 2, `${next.started - log[refused]!.ended} ms`);
  assert.equal(next.status, 202);
  assert.deepEqual(c.stats, { queued: 4, sent: 4, rejected: 0, dropped: 0, failed: 0, retries: c.stats.retries, errors: 0 });
  const stored = await storedEvents(limited.url, env.key, type);
  assert.deepEqual(stored.map((e) => e["id"]).sort(), [...ids].sort());
});

/** The stored event minus what differs between any two ingests: when the hub received it. */
function comparable(event: Record<string, unknown>, keepTrace: boolean): Record<string, unknown> {
  const { received_at: _received, trace_id: trace, ...rest } = event;
  if (!keepTrace) {
    assert.match(String(trace), /^[0-9a-f]{32}$/); // a fresh trace id when none was sent
    return rest;
  }
  return { ...rest, trace_id: trace };
}

test("emitEvent (clinic) stores exactly what the hub stores for the same object POSTed", async () => {
  const c = client();
  const inputs = [
    {
      eventType: freshType("clinic"),
      actor: "customer" as const,
      clinicId: "clinic-7",
      customerId: "cust-42",
      timestamp: "2026-03-01T12:00:00.250-03:00",
      eventId: `evt-${process.pid}-clinic-1`,
      metadata: { value: 480.0, currency: "BRL", items: [{ categoria: "estetica_facial", qty: 1, price: 480.0 }] },
      context: { request_id: "req-1" },
      trace_id: "trace-clinic-1",
    },
    {
      eventType: freshType("clinic"),
      actor: "clinic" as const,
      clinicId: "clinic-7",
      timestamp: new Date("2026-03-02T08:30:00Z"),
      eventId: `evt-${process.pid}-clinic-2`,
      metadata: { "gênero": "f", nome: "Ana" },
      source: "clinic-crm",
    },
    {
      eventType: freshType("clinic"),
      actor: "system" as const,
      clinicId: "clinic-8",
      customerId: null,
      timestamp: new Date("2026-03-03T00:00:00.001Z"),
      eventId: `evt-${process.pid}-clinic-3`,
      metadata: {},
    },
  ];
  const ids = inputs.map((input) => c.emitEvent(input));
  assert.deepEqual(ids, inputs.map((i) => i.eventId));
  await c.flush();
  assert.equal(c.stats.sent, 3);
  await postRaw(hub.url, env.nativeKey, inputs);
  for (const [n, input] of inputs.entries()) {
    const viaSdk = await storedEvent(hub.url, env.key, input.eventId);
    const native = await storedEvent(hub.url, env.nativeKey, input.eventId);
    assert.deepEqual(comparable(viaSdk, n === 0), comparable(native, n === 0));
  }
  const first = await storedEvent(hub.url, env.key, inputs[0]!.eventId);
  assert.equal(first["subject"], "cust-42");
  assert.deepEqual(first["actor"], { id: "cust-42", type: "customer" });
  assert.equal(first["time"], "2026-03-01T15:00:00.250000Z");
});

test("emitEvent without eventId or timestamp gets a UUIDv7 and the moment of the call", async () => {
  const c = client({ source: "clinic-crm" });
  const before = Date.now();
  const id = c.emitEvent({ eventType: freshType("clinic"), actor: "system", clinicId: "c1", metadata: { a: 1 } });
  const afterCall = Date.now();
  await c.flush();
  const stored = await storedEvent(hub.url, env.key, id);
  const time = Date.parse(String(stored["time"]));
  assert.ok(time >= before && time <= afterCall, `${stored["time"]}`);
  assert.ok(uuidv7Time(id)! >= before);
  assert.equal(stored["source"], "clinic-crm");
  assert.deepEqual(stored["context"], { clinic_id: "c1" });
});

test("publishEvent (legal BaseEvent) stores exactly what the hub stores for the same object POSTed", async () => {
  const c = client();
  const inputs = [
    {
      eventId: `evt-${process.pid}-legal-1`,
      eventType: freshType("legal"),
      eventVersion: "1.0.0",
      timestamp: new Date("2026-04-01T10:00:00.5Z"),
      actor: "user_abc123",
      actorType: "user",
      organizationId: "org_9",
      payload: { email: "user@example.com", signupMethod: "email" },
      metadata: { ipAddress: "203.0.113.9", userAgent: "Mozilla/5.0", requestId: "req-9", source: "auth", environment: "production" },
      processed: false,
      retryCount: 0,
      correlation_id: "matter-1",
      trace_id: "trace-legal-1",
    },
    {
      eventId: `evt-${process.pid}-legal-2`,
      eventType: freshType("legal"),
      eventVersion: "2.1.0",
      timestamp: "2026-04-02T10:00:00+01:00",
      payload: { invoiceId: "inv_1", amount: 1200 },
      metadata: { environment: "staging" },
    },
  ];
  const published = inputs.map((input) => c.publishEvent(input));
  assert.equal(published[0]!.eventId, inputs[0]!.eventId);
  assert.equal(published[0]!.processed, false);
  assert.ok(published[1]!.timestamp instanceof Date);
  await c.flush();
  assert.equal(c.stats.sent, 2);
  await postRaw(hub.url, env.nativeKey, inputs);
  for (const [n, input] of inputs.entries()) {
    const viaSdk = await storedEvent(hub.url, env.key, input.eventId);
    const native = await storedEvent(hub.url, env.nativeKey, input.eventId);
    assert.deepEqual(comparable(viaSdk, n === 0), comparable(native, n === 0));
  }
  const first = await storedEvent(hub.url, env.key, inputs[0]!.eventId);
  assert.equal(first["source"], "auth");
  assert.equal(first["version"], "1.0.0");
  assert.deepEqual(first["actor"], { id: "user_abc123", type: "user" });
  assert.deepEqual(first["context"], {
    ip: "203.0.113.9",
    user_agent: "Mozilla/5.0",
    request_id: "req-9",
    environment: "production",
    organization_id: "org_9",
  });
});

test("publishEvent fills eventId and timestamp as the plan's publisher did", async () => {
  const c = client();
  const before = Date.now();
  const event = c.publishEvent({ eventType: freshType("legal"), eventVersion: "1.0.0", payload: { a: 1 }, metadata: { source: "api", environment: "test" } });
  assert.ok(uuidv7Time(event.eventId)! >= before);
  assert.equal(event.retryCount, 0);
  await c.flush();
  const stored = await storedEvent(hub.url, env.key, event.eventId);
  assert.equal(Date.parse(String(stored["time"])), event.timestamp.getTime());
});

test("emit never throws: bad arguments are dropped and reported, a rejected event is reported", async () => {
  const errors: SwitchboardError[] = [];
  const c = client({ batchSize: 3 }, errors);
  const type = freshType("bad");
  const circular: Record<string, unknown> = {};
  circular["self"] = circular;
  const returned = [
    c.emit(type, circular),
    c.emit("" as string, {}),
    c.emit(type, [] as unknown as object),
    c.emit(type, { big: "x".repeat(1024 * 1024) }),
    c.emit(type, {}, { colour: "red" } as never),
  ];
  assert.equal(errors.length, 5);
  assert.ok(errors.every((e) => e.code === "invalid_event"));
  assert.deepEqual(errors.map((e) => e.eventIds[0]), returned);
  // one event of a batch the hub refuses: the others of the batch are stored
  const good = c.emit(type, { n: 1 });
  const bad = c.emit(type, { n: 2 }, { time: "2026-01-01T00:00:00" }); // no timezone
  const good2 = c.emit({ type, data: { n: 3 }, subject: "s-1" });
  await c.flush();
  assert.deepEqual(c.stats, { queued: 3, sent: 2, rejected: 1, dropped: 5, failed: 0, retries: 0, errors: 6 });
  const rejected = errors[5]!;
  assert.equal(rejected.code, "rejected");
  assert.deepEqual(rejected.eventIds, [bad]);
  assert.equal(rejected.details[0]?.path, "/time");
  const stored = await storedEvents(hub.url, env.key, type);
  assert.deepEqual(stored.map((e) => e["id"]).sort(), [good, good2].sort());
  assert.ok(!JSON.stringify(errors.map((e) => e.message)).includes(env.key), "the key leaked into an error");
});

test("a wrong key fails the batch without retries, reported with the hub's message", async () => {
  const errors: SwitchboardError[] = [];
  const c = client({ apiKey: "sb_wrong" }, errors);
  c.emit(freshType("auth"), {});
  await c.flush();
  assert.deepEqual(c.stats, { queued: 1, sent: 0, rejected: 0, dropped: 0, failed: 1, retries: 0, errors: 1 });
  assert.equal(errors[0]!.code, "batch_failed");
  assert.equal(errors[0]!.status, 401);
});

test("a full queue drops and counts, reported once per run; close with a timeout gives up", async () => {
  const errors: SwitchboardError[] = [];
  const down = await freePort(); // nothing listens there
  const c = client({ url: `http://127.0.0.1:${down}`, maxQueue: 2, maxRetries: 1000 }, errors);
  for (let n = 0; n < 5; n++) c.emit(freshType("full"), { n });
  assert.equal(c.stats.dropped, 3);
  assert.deepEqual(errors.map((e) => e.code), ["queue_full"]);
  await c.flush(100); // times out without rejecting
  await c.close(100);
  assert.equal(c.stats.failed, 2);
  assert.deepEqual(errors.map((e) => e.code), ["queue_full", "unsent_at_close"]);
  assert.equal(errors[1]!.eventIds.length, 2);
  c.emit("after.close", {});
  assert.equal(c.stats.dropped, 4);
  assert.equal(errors[2]!.code, "closed");
});

test("Node: a script that emits and ends without flushing still delivers (beforeExit)", async () => {
  const type = freshType("exit");
  const index = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/index.js");
  const script = `
    import { Client } from ${JSON.stringify(index)};
    const c = new Client({ url: ${JSON.stringify(hub.url)}, apiKey: process.env.KEY, flushIntervalMs: 60000 });
    console.log(c.emit(${JSON.stringify(type)}, { n: 1 }));
  `;
  const id = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, KEY: env.key }, timeout: 20_000 }, (error, stdout) =>
      error ? reject(error) : resolve(stdout.trim()),
    );
  });
  const stored = await storedEvents(hub.url, env.key, type);
  assert.deepEqual(stored.map((e) => e["id"]), [id]);
});
