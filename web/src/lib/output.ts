// A running job's live output as chunks arrive (`output.<pc>.<exec>` through the backend): in order, each once,
// counting gaps, and bounded so a chatty script cannot exhaust the tab.

import type { OutputChunk } from "./types";

/// The most output kept on the page; older text is dropped from the front.
export const MAX_LIVE_CHARS = 512 * 1024;

export class LiveOutput {
  private parts: string[] = [];
  private chars = 0;
  private next = 0;
  /// Chunks that never arrived (the live stream is best-effort; the stored result is complete).
  missed = 0;
  /// Text dropped from the front to stay under the bound.
  dropped = 0;

  /// Adds a chunk; false when it was a duplicate or out of date (nothing changed).
  add(chunk: OutputChunk): boolean {
    if (!Number.isInteger(chunk.seq) || chunk.seq < this.next || typeof chunk.data !== "string") return false;
    this.missed += chunk.seq - this.next;
    this.next = chunk.seq + 1;
    this.parts.push(chunk.data);
    this.chars += chunk.data.length;
    while (this.chars > MAX_LIVE_CHARS && this.parts.length > 1) {
      const first = this.parts.shift() ?? "";
      this.chars -= first.length;
      this.dropped += first.length;
    }
    if (this.chars > MAX_LIVE_CHARS) {
      const only = this.parts[0] ?? "";
      this.parts[0] = only.slice(only.length - MAX_LIVE_CHARS);
      this.dropped += only.length - MAX_LIVE_CHARS;
      this.chars = MAX_LIVE_CHARS;
    }
    return true;
  }

  text(): string {
    return (this.dropped > 0 ? `[${this.dropped} earlier characters not shown]\n` : "") + this.parts.join("");
  }
}
