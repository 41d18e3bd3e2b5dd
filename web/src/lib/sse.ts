// Server-sent events over `fetch`, because the browser's EventSource cannot send an Authorization header (and a
// token in the URL would end up in logs). The parser is pure so it is unit-tested; `follow` adds the network and
// reconnects with a capped backoff.

import { authHeaders, type Credentials, errorFrom } from "./api";

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
  private buffer = "";
  private data: string[] = [];
  private size = 0;
  private event = "";
  private id: string | undefined;
  private oversized = false;

  feed(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone `\r` at the very end may be the first half of `\r\n`: wait for the next chunk.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const done = this.line(line);
      if (done) out.push(done);
    }
    if (this.buffer.length > MAX_EVENT_BYTES) {
      // One line longer than any event may be: drop it and everything up to the next blank line.
      this.buffer = "";
      this.oversized = true;
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
  credentials: Credentials | null;
  onEvent: (event: SseEvent) => void;
  onState?: (state: StreamState, detail?: string) => void;
  /// Stop reconnecting after the stream ends normally (a finished run's output), instead of following forever.
  once?: boolean;
}

/// Follows an event stream until `signal` aborts, reconnecting after failures. Resolves when stopped.
export async function follow(options: FollowOptions, signal: AbortSignal): Promise<void> {
  let attempt = 0;
  while (!signal.aborted) {
    options.onState?.("connecting");
    try {
      const response = await fetch(options.path, {
        headers: { Accept: "text/event-stream", ...authHeaders(options.credentials) },
        signal,
      });
      if (response.status === 401) {
        options.onState?.("unauthorized");
        return;
      }
      if (!response.ok || !response.body) {
        throw errorFrom(response.status, await response.text());
      }
      options.onState?.("live");
      attempt = 0;
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
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
