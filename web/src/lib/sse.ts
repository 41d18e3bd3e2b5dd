// Server-sent events over `fetch`, because the browser's EventSource cannot send an Authorization header (and a
// token in the URL would end up in logs). The parser is pure so it is unit-tested; `follow` adds the network and
// reconnects with a capped backoff.

import { type ApiError, type Authority, asAuthority, type Credentials, errorFrom } from "./api";

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/// The most a single event may grow to before the parser drops it: a hostile or broken server cannot make the tab
/// buffer without bound.
export const MAX_EVENT_BYTES = 1024 * 1024;

/// Incremental parser for the `text/event-stream` format (WHATWG HTML, "Server-sent events"): feed it text as it
/// arrives, in chunks split anywhere, and it returns the events completed so far.
export class SseParser {
  /// The pieces of the line not yet ended, kept apart so a long line arriving in small chunks is not copied again
  /// and again.
  private pending: string[] = [];
  private pendingLength = 0;
  private data: string[] = [];
  private size = 0;
  private event = "";
  private id: string | undefined;
  private oversized = false;
  /// The last chunk ended in `\r`: a `\n` starting the next one is the rest of that line ending, not a blank line.
  private afterCr = false;
  /// The start of the current line was dropped for being too long: its rest is dropped too when it ends.
  private skipLine = false;

  feed(chunk: string): SseEvent[] {
    if (chunk === "") return [];
    if (this.afterCr) {
      this.afterCr = false;
      if (chunk.startsWith("\n")) chunk = chunk.slice(1);
    }
    const out: SseEvent[] = [];
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    for (let match = eol.exec(chunk); match; match = eol.exec(chunk)) {
      let line = chunk.slice(start, match.index);
      start = match.index + match[0].length;
      if (this.pending.length > 0) {
        line = this.pending.join("") + line;
        this.pending = [];
        this.pendingLength = 0;
      }
      if (this.skipLine) {
        this.skipLine = false;
        continue;
      }
      const done = this.line(line);
      if (done) out.push(done);
    }
    // A lone `\r` at the very end ends its line now; a `\n` arriving next is skipped above.
    if (start === chunk.length && chunk.endsWith("\r")) this.afterCr = true;
    if (start < chunk.length) {
      this.pending.push(chunk.slice(start));
      this.pendingLength += chunk.length - start;
    }
    if (this.pendingLength > MAX_EVENT_BYTES) {
      // One line longer than any event may be: drop it and everything up to the next blank line.
      this.pending = [];
      this.pendingLength = 0;
      this.oversized = true;
      this.skipLine = true;
    }
    return out;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      const event: SseEvent | null =
        this.data.length > 0 && !this.oversized
          ? { event: this.event || "message", data: this.data.join("\n"), ...(this.id !== undefined ? { id: this.id } : {}) }
          : null;
      this.data = [];
      this.size = 0;
      this.event = "";
      this.oversized = false;
      return event;
    }
    if (line.length > MAX_EVENT_BYTES) {
      // The same line arriving in pieces is dropped by `feed`; arriving whole, it is dropped here.
      this.oversized = true;
      return null;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.size += value.length + 1;
        if (this.size > MAX_EVENT_BYTES) this.oversized = true;
        else this.data.push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      default:
        // `retry` and unknown fields: ignored, as the spec says for unknown ones.
        break;
    }
    return null;
  }
}

/// The delay before reconnect attempt `attempt` (0-based): doubling from 500 ms, capped at 15 s.
export function backoff(attempt: number): number {
  return Math.min(15_000, 500 * 2 ** Math.min(attempt, 10));
}

export type StreamState = "connecting" | "live" | "retrying" | "unauthorized";

export interface FollowOptions {
  path: string;
  /// Who follows it: a signed-in session (renewed when the backend refuses its token), or fixed credentials.
  auth: Authority | Credentials | null;
  onEvent: (event: SseEvent) => void;
  onState?: (state: StreamState, detail?: string) => void;
  /// Stop reconnecting after the stream ends normally (a finished run's output), instead of following forever.
  once?: boolean;
  /// A refusal that retrying cannot mend (a 404 for an agent that does not exist): return true and following stops
  /// there, the caller showing why. Any other refusal is retried.
  fatal?: (error: ApiError) => boolean;
}

/// Follows an event stream until `signal` aborts, reconnecting after failures. Resolves when stopped.
export async function follow(options: FollowOptions, signal: AbortSignal): Promise<void> {
  const auth = asAuthority(options.auth);
  let attempt = 0;
  // A refused token is renewed once, then the stream reconnects at once; refused again before going live, it stops.
  let renewed = false;
  while (!signal.aborted) {
    options.onState?.("connecting");
    try {
      const sent = await auth.headers();
      const response = await fetch(options.path, { headers: { Accept: "text/event-stream", ...sent }, signal });
      if (response.status === 401) {
        if (!renewed && (await auth.renew(sent))) {
          renewed = true;
          continue;
        }
        options.onState?.("unauthorized");
        return;
      }
      if (!response.ok || !response.body) {
        const error = errorFrom(response.status, await response.text());
        if (options.fatal?.(error)) return;
        throw error;
      }
      options.onState?.("live");
      attempt = 0;
      renewed = false;
      const parser = new SseParser();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.feed(value)) options.onEvent(event);
      }
      if (options.once) return;
    } catch (err) {
      if (signal.aborted) return;
      options.onState?.("retrying", (err as Error).message);
    }
    await sleep(backoff(attempt++), signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
