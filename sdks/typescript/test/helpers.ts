/**
 * The machinery of the tests: the real hub (`switchboard serve`) as a child process on
 * 127.0.0.1, a TCP proxy that can swallow one answer, and reads of what the hub stored.
 *
 * The pytest wrapper (tests/acceptance/test_typescript_sdk.py) makes a fresh database with two
 * tenants and passes it in SWITCHBOARD_TEST_* variables.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import net from "node:net";
import path from "node:path";

export interface TestEnv {
  cli: string; // the `switchboard` executable
  hubEnv: Record<string, string>; // SWITCHBOARD_* of the hub (database, rate limits off, ...)
  key: string; // ingest+read key of the tenant the SDK sends to
  nativeKey: string; // ingest+read key of a second tenant, for POSTs of the same input
  tmp: string; // a folder for the hubs' logs
  backend: string; // sqlite | postgres
}

export function testEnv(): TestEnv {
  const need = (name: string): string => {
    const value = process.env[name];
    if (!value) {
      throw new Error(`${name} is not set: run these tests through pytest tests/acceptance/test_typescript_sdk.py`);
    }
    return value;
  };
  return {
    cli: need("SWITCHBOARD_TEST_CLI"),
    hubEnv: JSON.parse(need("SWITCHBOARD_TEST_HUB_ENV")) as Record<string, string>,
    key: need("SWITCHBOARD_TEST_KEY"),
    nativeKey: need("SWITCHBOARD_TEST_NATIVE_KEY"),
    tmp: need("SWITCHBOARD_TEST_TMP"),
    backend: need("SWITCHBOARD_TEST_BACKEND"),
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Poll `check` until it returns something truthy; fail naming `what` after `withinMs`. */
export async function waitFor<T>(check: () => Promise<T> | T, withinMs: number, what: string): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50)); // paces the polling only
  }
}

let hubs = 0;

/** One `switchboard serve` process; SIGKILLed by `kill()` (no shutdown code runs). */
export class Hub {
  private proc: ChildProcess | undefined;
  readonly url: string;

  constructor(
    private readonly env: TestEnv,
    readonly port: number,
    private readonly settings: Record<string, string> = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(env: TestEnv, settings: Record<string, string> = {}): Promise<Hub> {
    const hub = new Hub(env, await freePort(), settings);
    await hub.start();
    return hub;
  }

  async start(): Promise<void> {
    const log = openSync(path.join(this.env.tmp, `hub-${process.pid}-${hubs++}.log`), "a");
    try {
      this.proc = spawn(this.env.cli, ["serve"], {
        env: { ...this.env.hubEnv, ...this.settings, SWITCHBOARD_PORT: String(this.port) },
        stdio: ["ignore", log, log],
      });
    } finally {
      closeSync(log);
    }
    const proc = this.proc;
    await waitFor(
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the hub exited (${proc.exitCode})`);
        try {
          const r = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) });
          return r.status === 200;
        } catch {
          return false;
        }
      },
      30_000,
      "the hub to answer /health",
    );
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await exited;
  }
}

/** Stored events of the key's tenant, of one type (every page). */
export async function storedEvents(hubUrl: string, key: string, type: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  let cursor: string | null = null;
  do {
    const query: string = `type=${encodeURIComponent(type)}&limit=1000` + (cursor ? `&cursor=${cursor}` : "");
    const r = await fetch(`${hubUrl}/v1/events?${query}`, { headers: { Authorization: `Bearer ${key}` } });
    if (r.status !== 200) throw new Error(`GET /v1/events: ${r.status} ${await r.text()}`);
    const page = (await r.json()) as { data: Record<string, unknown>[]; next_cursor: string | null };
    out.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

export async function storedEvent(hubUrl: string, key: string, id: string): Promise<Record<string, unknown>> {
  const r = await fetch(`${hubUrl}/v1/events/${encodeURIComponent(id)}`, { headers: { Authorization: `Bearer ${key}` } });
  if (r.status !== 200) throw new Error(`GET /v1/events/${id}: ${r.status} ${await r.text()}`);
  return (await r.json()) as Record<string, unknown>;
}

/** POST a body to /v1/events as-is (the hub's native handling of the seeds' shapes). */
export async function postRaw(hubUrl: string, key: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${hubUrl}/v1/events`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = (await r.json()) as Record<string, unknown>;
  if (r.status !== 202) throw new Error(`POST /v1/events: ${r.status} ${JSON.stringify(answer)}`);
  return answer;
}

/**
 * A TCP proxy to the hub that can swallow one answer: the request reaches the hub (which stores
 * the events and answers), then the connection is cut before any byte of the answer gets back,
 * as when a network path dies after the server committed.
 */
export class AnswerEater {
  private server: net.Server | undefined;
  private sockets = new Set<net.Socket>();
  port = 0;
  swallowNext = false;
  swallowed: string[] = []; // the status lines that never reached the client

  constructor(private readonly target: number) {}

  async start(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target, "127.0.0.1");
      this.sockets.add(client).add(upstream);
      client.on("data", (chunk) => upstream.write(chunk));
      upstream.on("data", (chunk: Buffer) => {
        if (this.swallowNext) {
          this.swallowNext = false;
          this.swallowed.push(chunk.toString("latin1").split("\r\n")[0] ?? "");
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(chunk);
      });
      const end = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("close", end).on("error", end);
      upstream.on("close", end).on("error", end);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

/** A fetch that records every request it passes on to the real one. */
export interface Exchange {
  events: number;
  started: number;
  ended: number;
  status: number | undefined;
  retryAfter: string | null;
}

export function recordingFetch(log: Exchange[]): (input: string, init: RequestInit) => Promise<Response> {
  return async (input, init) => {
    const exchange: Exchange = {
      events: (JSON.parse(String(init.body)) as unknown[]).length,
      started: performance.now(),
      ended: 0,
      status: undefined,
      retryAfter: null,
    };
    log.push(exchange);
    try {
      const response = await fetch(input, init);
      exchange.status = response.status;
      exchange.retryAfter = response.headers.get("Retry-After");
      return response;
    } finally {
      exchange.ended = performance.now();
    }
  };
}
