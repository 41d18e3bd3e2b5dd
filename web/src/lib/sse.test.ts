import { afterEach, describe, expect, it, vi } from "vitest";
import { backoff, follow, MAX_EVENT_BYTES, SseParser, type SseEvent, type StreamState } from "./sse";
import { rng } from "./seeded";


function parse(chunks: Iterable<string>): SseEvent[] {
  const parser = new SseParser();
  const out: SseEvent[] = [];
  for (const chunk of chunks) out.push(...parser.feed(chunk));
  return out;
}

function randomChunks(text: string, random: () => number, maxChunk: number): string[] {
  const chunks: string[] = [];
  let at = 0;
  while (at < text.length) {
    // Empty chunks too: a reader may hand over nothing.
    const n = Math.floor(random() * (maxChunk + 1));
    chunks.push(text.slice(at, at + n));
    at += n;
  }
  return chunks;
}

const pendingOf = (parser: SseParser) => (parser as unknown as { pendingLength: number }).pendingLength;

// Every feature at once, with all three line endings mixed.
const STREAM =
  ": a comment, ignored\n" +
  "retry: 1000\n" +
  "data: one\n\n" +
  'event: change\r\ndata: {"topic":"agents","ids":["pc-1"]}\r\n\r\n' +
  "data: line1\rdata: line2\r\r" +
  "id: 7\nevent: output\ndata:  two spaces\ndata:no-space\ndata\n\n" +
  "unknown: field\nevent: no-data-so-no-event\n\n" +
  "data: after\n:comment between data lines\ndata: more\r\n\n" +
  "data: ünïcödé ✓ 🎉\n\n" +
  "event: empty\ndata:\n\n" +
  "data: never finished";

const EXPECTED: SseEvent[] = [
  { event: "message", data: "one" },
  { event: "change", data: '{"topic":"agents","ids":["pc-1"]}' },
  { event: "message", data: "line1\nline2" },
  { event: "output", data: " two spaces\nno-space\n", id: "7" },
  { event: "message", data: "after\nmore", id: "7" },
  { event: "message", data: "ünïcödé ✓ 🎉", id: "7" },
  { event: "empty", data: "", id: "7" },
];

describe("SseParser", () => {
  it("parses a stream fed in one piece", () => {
    expect(parse([STREAM])).toEqual(EXPECTED);
  });

  it("gives the same events split at every possible position", () => {
    for (let i = 0; i <= STREAM.length; i++) {
      expect(parse([STREAM.slice(0, i), STREAM.slice(i)]), `split at ${i}`).toEqual(EXPECTED);
    }
  });

  it("gives the same events split at every pair of positions", () => {
    const step = 3;
    for (let i = 0; i <= STREAM.length; i += step) {
      for (let j = i; j <= STREAM.length; j += step) {
        expect(parse([STREAM.slice(0, i), STREAM.slice(i, j), STREAM.slice(j)]), `split at ${i},${j}`).toEqual(EXPECTED);
      }
    }
  });

  it("gives the same events fed char by char", () => {
    expect(parse([...STREAM])).toEqual(EXPECTED);
    // And UTF-16 unit by unit, splitting the emoji's surrogate pair.
    expect(parse(STREAM.split(""))).toEqual(EXPECTED);
  });

  it("gives the same events in random chunkings", () => {
    const random = rng(42);
    for (let round = 0; round < 300; round++) {
      const chunks = randomChunks(STREAM, random, 1 + Math.floor(random() * 40));
      expect(chunks.join("")).toBe(STREAM);
      expect(parse(chunks), `round ${round}`).toEqual(EXPECTED);
    }
  });

  it("emits each event as soon as its blank line has arrived, whatever the chunking", () => {
    // After any prefix, the events so far are exactly those a parser fed that prefix at once returns.
    const parser = new SseParser();
    const seen: SseEvent[] = [];
    for (let i = 0; i < STREAM.length; i++) {
      seen.push(...parser.feed(STREAM[i] ?? ""));
      expect(seen, `after ${i + 1} chars`).toEqual(parse([STREAM.slice(0, i + 1)]));
    }
  });

  it("handles CRLF, lone CR and LF line endings alike", () => {
    for (const eol of ["\n", "\r\n", "\r"]) {
      const text = `event: e${eol}data: a${eol}data: b${eol}${eol}data: c${eol}${eol}`;
      const expected = [
        { event: "e", data: "a\nb" },
        { event: "message", data: "c" },
      ];
      expect(parse([text]), JSON.stringify(eol)).toEqual(expected);
      expect(parse([...text]), JSON.stringify(eol)).toEqual(expected);
    }
  });

  it("dispatches an event ended by a lone CR at the very end of a chunk without waiting for more", () => {
    const parser = new SseParser();
    expect(parser.feed("data: a\r\r")).toEqual([{ event: "message", data: "a" }]);
    // A `\n` arriving next is the second half of a CRLF, not another (blank) line.
    expect(parser.feed("\ndata: b\r")).toEqual([]);
    expect(parser.feed("\n")).toEqual([]);
    expect(parser.feed("data: c\r\n\r\n")).toEqual([{ event: "message", data: "b\nc" }]);
  });

  it("treats CR CR as two line endings, not one", () => {
    expect(parse(["data: x\r", "\r", "data: y\n\n"])).toEqual([
      { event: "message", data: "x" },
      { event: "message", data: "y" },
    ]);
  });

  it("ignores comments, including ones between data lines and a colon-only line", () => {
    expect(parse([":\n: keep-alive\ndata: a\n:\ndata: b\n\n"])).toEqual([{ event: "message", data: "a\nb" }]);
    // A stream of nothing but comments (a heartbeat) produces no events.
    expect(parse([": ping\n\n: ping\n\n"])).toEqual([]);
  });

  it("keeps multi-line data joined by newlines, empty lines of data included", () => {
    expect(parse(["data: a\ndata:\ndata: c\n\n"])).toEqual([{ event: "message", data: "a\n\nc" }]);
    expect(parse(["data\ndata\n\n"])).toEqual([{ event: "message", data: "\n" }]);
  });

  it("strips exactly one space after the colon and keeps colons in the value", () => {
    expect(parse(["data:   x: y\n\n"])).toEqual([{ event: "message", data: "  x: y" }]);
    expect(parse(["data:x:y\n\n"])).toEqual([{ event: "message", data: "x:y" }]);
  });

  it("names events with `event:` and resets the name after each event", () => {
    expect(parse(["event: change\ndata: 1\n\ndata: 2\n\nevent: output\nevent: change\ndata: 3\n\n"])).toEqual([
      { event: "change", data: "1" },
      { event: "message", data: "2" },
      { event: "change", data: "3" },
    ]);
    // An empty name is the default name.
    expect(parse(["event:\ndata: x\n\n"])).toEqual([{ event: "message", data: "x" }]);
  });

  it("does not emit an event without data", () => {
    expect(parse(["event: lonely\n\nid: 1\n\n\n\n\n"])).toEqual([]);
  });

  it("keeps the last event id across events and ignores ids with NUL", () => {
    expect(parse(["id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\n"])).toEqual([
      { event: "message", data: "a", id: "1" },
      { event: "message", data: "b", id: "1" },
      { event: "message", data: "c", id: "1" },
      { event: "message", data: "d", id: "" },
    ]);
  });

  it("ignores unknown fields and retry", () => {
    expect(parse(["retry: 10\nfoo: bar\nDATA: upper\nData: mixed\ndata : spaced\ndata: real\n\n"])).toEqual([
      { event: "message", data: "real" },
    ]);
  });

  it("drops an incomplete trailing event", () => {
    expect(parse(["data: a\n\ndata: b\n"])).toEqual([{ event: "message", data: "a" }]);
  });

  it("returns nothing for empty chunks and keeps its state", () => {
    const parser = new SseParser();
    expect(parser.feed("")).toEqual([]);
    expect(parser.feed("data: a")).toEqual([]);
    expect(parser.feed("")).toEqual([]);
    expect(parser.feed("\r")).toEqual([]);
    expect(parser.feed("")).toEqual([]);
    expect(parser.feed("\n")).toEqual([]);
    expect(parser.feed("\n")).toEqual([{ event: "message", data: "a" }]);
  });

  it("reuses one parser for many events", () => {
    const parser = new SseParser();
    const got: SseEvent[] = [];
    for (let i = 0; i < 1000; i++) got.push(...parser.feed(`data: ${i}\n\n`));
    expect(got.map((e) => e.data)).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
  });
});

describe("SseParser, oversized input", () => {
  const huge = "x".repeat(MAX_EVENT_BYTES);
  const next = "data: next\n\n";

  it("drops an event whose data line is beyond the limit, in one chunk, and parses the next", () => {
    expect(parse([`event: big\ndata: ${huge}\n\n${next}`])).toEqual([{ event: "message", data: "next" }]);
  });

  it("drops an event beyond the limit however it is chunked", () => {
    const text = `event: big\ndata: ${huge}\ndata: still the big one\n\n${next}`;
    const random = rng(7);
    for (const size of [1000, 4096, 65_536, MAX_EVENT_BYTES - 3, MAX_EVENT_BYTES + 5]) {
      const chunks: string[] = [];
      for (let at = 0; at < text.length; at += size) chunks.push(text.slice(at, at + size));
      expect(parse(chunks), `chunks of ${size}`).toEqual([{ event: "message", data: "next" }]);
    }
    for (let round = 0; round < 5; round++) {
      expect(parse(randomChunks(text, random, 200_000)), `round ${round}`).toEqual([{ event: "message", data: "next" }]);
    }
  });

  it("splits the over-long line exactly where it ends and still drops the rest of its event", () => {
    // The chunk boundary falls right at the end of the over-long line: the line ending that follows must not read
    // as a blank line that would let the rest of the dropped event through as an event of its own.
    for (const eol of ["\n", "\r\n", "\r"]) {
      const parser = new SseParser();
      expect(parser.feed(`data: ${huge}`)).toEqual([]);
      expect(parser.feed(`${eol}data: tail of the big one${eol}${eol}`), JSON.stringify(eol)).toEqual([]);
      expect(parser.feed(next)).toEqual([{ event: "message", data: "next" }]);
    }
  });

  it("drops an event whose many data lines add up beyond the limit", () => {
    const part = "y".repeat(MAX_EVENT_BYTES / 4);
    const text = `data: ${part}\n`.repeat(5) + "\n" + next;
    expect(parse([text])).toEqual([{ event: "message", data: "next" }]);
    // Just under the limit still arrives whole.
    const ok = `data: ${"z".repeat(MAX_EVENT_BYTES / 2 - 2)}\n`.repeat(2) + "\n";
    const events = parse([ok]);
    expect(events).toHaveLength(1);
    expect(events[0]?.data.length).toBe(MAX_EVENT_BYTES - 3);
  });

  it("bounds a line that never ends, and recovers after it ends", () => {
    const parser = new SseParser();
    const chunk = "w".repeat(64 * 1024);
    for (let i = 0; i < 64; i++) {
      expect(parser.feed(i === 0 ? `data: ${chunk}` : chunk)).toEqual([]);
      expect(pendingOf(parser)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    }
    expect(parser.feed("still going\ndata: same event\n\n")).toEqual([]);
    expect(parser.feed(next)).toEqual([{ event: "message", data: "next" }]);
  });

  it("drops a long line that trickles in one character at a time", () => {
    // A server sending a byte at a time must not make each read rescan (or recopy) everything before it.
    const parser = new SseParser();
    expect(parser.feed("data: ")).toEqual([]);
    for (let i = 0; i < MAX_EVENT_BYTES + 1000; i++) parser.feed("t");
    expect(parser.feed("\n\n")).toEqual([]);
    for (let i = 0; i < 200_000; i++) parser.feed("u");
    expect(parser.feed("\n\n" + next)).toEqual([{ event: "message", data: "next" }]);
  });

  it("treats an over-long field line the same whether it arrives whole or in pieces", () => {
    for (const field of ["event: ", "id: ", ": comment ", "unknown: "]) {
      const text = `${field}${huge}\ndata: x\n\n${next}`;
      const whole = parse([text]);
      const pieces = parse(randomChunks(text, rng(3), 50_000));
      expect(pieces, field).toEqual(whole);
      expect(whole.at(-1)).toEqual({ event: "message", data: "next" });
      for (const event of whole) {
        expect(event.event.length + event.data.length + (event.id?.length ?? 0)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
      }
    }
  });

  it("does not let an over-long id stick to later events", () => {
    const events = parse([`id: ${huge}\ndata: x\n\n${next}`]);
    for (const event of events) expect((event.id ?? "").length).toBeLessThan(100);
  });
});

describe("backoff", () => {
  it("doubles from 500 ms and caps at 15 s", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map(backoff)).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
    expect(backoff(1000)).toBe(15_000);
    expect(backoff(Number.MAX_SAFE_INTEGER)).toBe(15_000);
  });

  it("never decreases", () => {
    for (let i = 0; i < 50; i++) expect(backoff(i + 1)).toBeGreaterThanOrEqual(backoff(i));
  });
});

describe("follow", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it("sends the credentials, reports its states and delivers events, then stops with `once`", async () => {
    const fetch = vi.fn(async () => new Response("event: output\ndata: hi\n\ndata: there\n\n", { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    const events: SseEvent[] = [];
    const states: StreamState[] = [];
    await follow(
      {
        path: "/api/x",
        auth: { token: "t0k", operator: "alice" },
        onEvent: (e) => events.push(e),
        onState: (s) => states.push(s),
        once: true,
      },
      new AbortController().signal,
    );
    expect(events).toEqual([
      { event: "output", data: "hi" },
      { event: "message", data: "there" },
    ]);
    expect(states).toEqual(["connecting", "live"]);
    expect(fetch).toHaveBeenCalledTimes(1);
    const init = (fetch.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect(init.headers).toMatchObject({ Accept: "text/event-stream", Authorization: "Bearer t0k", "X-Kanade-Operator": "alice" });
  });

  it("gives up on 401 without retrying", async () => {
    const fetch = vi.fn(async () => new Response("no", { status: 401 }));
    vi.stubGlobal("fetch", fetch);
    const states: StreamState[] = [];
    await follow({ path: "/x", auth: null, onEvent: () => {}, onState: (s) => states.push(s) }, new AbortController().signal);
    expect(states).toEqual(["connecting", "unauthorized"]);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it("renews a refused token once and reconnects at once with the new one; refused again, it stops", async () => {
    const sent: (string | undefined)[] = [];
    const answers = [new Response("no", { status: 401 }), new Response("data: hi\n\n"), new Response("no", { status: 401 })];
    vi.stubGlobal("fetch", async (_path: string, init?: RequestInit) => {
      sent.push((init?.headers as Record<string, string>)["Authorization"]);
      return answers.shift() as Response;
    });
    let token = "old";
    const renewals: string[] = [];
    const auth = {
      headers: async () => ({ Authorization: `Bearer ${token}` }),
      renew: async (headers: Record<string, string>) => {
        renewals.push(headers["Authorization"] ?? "");
        if (token === "old") {
          token = "new";
          return true;
        }
        return false;
      },
    };
    const states: StreamState[] = [];
    const events: SseEvent[] = [];
    await follow({ path: "/x", auth, onEvent: (e) => events.push(e), onState: (s) => states.push(s) }, new AbortController().signal);
    expect(sent).toEqual(["Bearer old", "Bearer new", "Bearer new"]);
    expect(events).toEqual([{ event: "message", data: "hi" }]);
    // After going live the stream may renew again; the second refusal could not be mended.
    expect(renewals).toEqual(["Bearer old", "Bearer new"]);
    expect(states).toEqual(["connecting", "connecting", "live", "connecting", "unauthorized"]);
  });

  it("retries after an error with the backend's message and stops promptly when aborted", async () => {
    vi.stubGlobal("fetch", async () => new Response('{"error":{"code":"boom","message":"it broke"}}', { status: 500 }));
    const controller = new AbortController();
    const details: (string | undefined)[] = [];
    // With fake timers the backoff never elapses: `follow` resolves only if it does not wait it out.
    vi.useFakeTimers();
    await follow(
      {
        path: "/x",
        auth: null,
        onEvent: () => {},
        onState: (s, detail) => {
          if (s === "retrying") {
            details.push(detail);
            controller.abort();
          }
        },
      },
      controller.signal,
    );
    vi.useRealTimers();
    expect(details).toEqual(["it broke"]);
  });

  it("stops at a refusal the caller calls fatal, and retries the others", async () => {
    const answers = [
      new Response('{"error":{"code":"too_many_watches","message":"busy"}}', { status: 503 }),
      new Response('{"error":{"code":"agent_not_found","message":"no agent `x`"}}', { status: 404 }),
    ];
    const fetch = vi.fn(async () => answers.shift() as Response);
    vi.stubGlobal("fetch", fetch);
    vi.useFakeTimers();
    const states: StreamState[] = [];
    const fatal: string[] = [];
    const done = follow(
      {
        path: "/x",
        auth: null,
        onEvent: () => {},
        onState: (s) => states.push(s),
        fatal: (error) => {
          if (error.code !== "agent_not_found") return false;
          fatal.push(error.message);
          return true;
        },
      },
      new AbortController().signal,
    );
    await vi.advanceTimersByTimeAsync(500);
    await done;
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(states).toEqual(["connecting", "retrying", "connecting"]);
    expect(fatal).toEqual(["no agent `x`"]);
  });

  it("reconnects with backoff after failures", async () => {
    vi.useFakeTimers();
    let calls = 0;
    vi.stubGlobal("fetch", async () => {
      calls++;
      throw new TypeError("network down");
    });
    const controller = new AbortController();
    const done = follow({ path: "/x", auth: null, onEvent: () => {} }, controller.signal);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(499);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toBe(3);
    controller.abort();
    await done;
  });
});
