// A running job's live output as chunks arrive (`output.<pc>.<exec>` through the backend): in order, each once,
// counting gaps, and bounded so a chatty script cannot exhaust the tab.

import type { OutputChunk } from "./types";

/// The most output kept on the page; older text is dropped from the front.
export const MAX_LIVE_CHARS = 512 * 1024;

export class LiveOutput {
  private parts: string[] = [];
  /// Parts before this index have been dropped (shifting a long array on every chunk would be quadratic).
  private head = 0;
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
    // Drop the oldest text, whole chunks while they fit in the excess, then just the excess of the oldest one left:
    // a big chunk is not thrown away whole because a small one came after it.
    while (this.chars > MAX_LIVE_CHARS) {
      const excess = this.chars - MAX_LIVE_CHARS;
      const first = this.parts[this.head] ?? "";
      const cut = Math.min(excess, first.length);
      if (cut === first.length) this.head++;
      else this.parts[this.head] = first.slice(cut);
      this.chars -= cut;
      this.dropped += cut;
    }
    if (this.head > 1024 && this.head * 2 > this.parts.length) {
      this.parts = this.parts.slice(this.head);
      this.head = 0;
    }
    return true;
  }

  text(): string {
    const shown = (this.head === 0 ? this.parts : this.parts.slice(this.head)).join("");
    return (this.dropped > 0 ? `[${this.dropped} earlier characters not shown]\n` : "") + shown;
  }
}
