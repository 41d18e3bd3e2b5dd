import { describe, expect, it } from "vitest";
import { LiveOutput, MAX_LIVE_CHARS } from "./output";
import type { OutputChunk } from "./types";

const out = (seq: number, data: string, stream: OutputChunk["stream"] = "stdout"): OutputChunk => ({ seq, stream, data });
const NOTE = /^\[(\d+) earlier characters not shown\]\n/;

/// The shown text without the note about dropped text.
const body = (o: LiveOutput) => o.text().replace(NOTE, "");

describe("LiveOutput", () => {
  it("starts empty", () => {
    const o = new LiveOutput();
    expect(o.text()).toBe("");
    expect(o.missed).toBe(0);
    expect(o.dropped).toBe(0);
  });

  it("joins chunks in order, stdout and stderr interleaved as they came", () => {
    const o = new LiveOutput();
    expect(o.add(out(0, "hello "))).toBe(true);
    expect(o.add(out(1, "oops\n", "stderr"))).toBe(true);
    expect(o.add(out(2, "world\n"))).toBe(true);
    expect(o.text()).toBe("hello oops\nworld\n");
    expect(o.missed).toBe(0);
  });

  it("ignores duplicates", () => {
    const o = new LiveOutput();
    o.add(out(0, "a"));
    o.add(out(1, "b"));
    expect(o.add(out(1, "b"))).toBe(false);
    expect(o.add(out(0, "a"))).toBe(false);
    expect(o.add(out(1, "something else"))).toBe(false);
    expect(o.text()).toBe("ab");
    expect(o.missed).toBe(0);
  });

  it("counts the chunks it skipped over as missed, and refuses them if they turn up late", () => {
    const o = new LiveOutput();
    o.add(out(0, "a"));
    expect(o.add(out(3, "d"))).toBe(true);
    expect(o.missed).toBe(2);
    // Out of order: already counted as missed, and too late to put back in place.
    expect(o.add(out(1, "b"))).toBe(false);
    expect(o.add(out(2, "c"))).toBe(false);
    expect(o.text()).toBe("ad");
    expect(o.missed).toBe(2);
    o.add(out(10, "k"));
    expect(o.missed).toBe(8);
  });

  it("counts chunks missed at the start", () => {
    const o = new LiveOutput();
    o.add(out(5, "f"));
    expect(o.missed).toBe(5);
    expect(o.text()).toBe("f");
  });

  it("refuses chunks with a seq or data it cannot use, changing nothing", () => {
    const o = new LiveOutput();
    o.add(out(0, "a"));
    for (const bad of [
      out(-1, "x"),
      out(1.5, "x"),
      out(Number.NaN, "x"),
      out(Number.POSITIVE_INFINITY, "x"),
      { seq: "2", stream: "stdout", data: "x" },
      { seq: 1, stream: "stdout", data: null },
      { seq: 1, stream: "stdout", data: 5 },
      { seq: 1, stream: "stdout" },
    ] as unknown as OutputChunk[]) {
      expect(o.add(bad), JSON.stringify(bad)).toBe(false);
    }
    expect(o.text()).toBe("a");
    expect(o.missed).toBe(0);
    expect(o.add(out(1, "b"))).toBe(true);
    expect(o.text()).toBe("ab");
  });

  it("accepts empty chunks, which still advance the sequence", () => {
    const o = new LiveOutput();
    expect(o.add(out(0, ""))).toBe(true);
    expect(o.add(out(1, "x"))).toBe(true);
    expect(o.missed).toBe(0);
    expect(o.text()).toBe("x");
  });

  it("keeps the end of a single chunk larger than the bound", () => {
    const o = new LiveOutput();
    const huge = "a".repeat(MAX_LIVE_CHARS) + "b".repeat(1000) + "THE END";
    expect(o.add(out(0, huge))).toBe(true);
    expect(body(o)).toHaveLength(MAX_LIVE_CHARS);
    expect(body(o).endsWith("THE END")).toBe(true);
    expect(o.dropped).toBe(huge.length - MAX_LIVE_CHARS);
    expect(o.text().match(NOTE)?.[1]).toBe(String(o.dropped));
    // And keeps going after it.
    o.add(out(1, "more"));
    // A small chunk after a huge one drops only as much of the huge one as it must.
    expect(body(o).endsWith("THE ENDmore")).toBe(true);
    expect(body(o)).toHaveLength(MAX_LIVE_CHARS);
    expect(o.dropped + body(o).length).toBe(huge.length + 4);
  });

  it("drops a big chunk from the front when a huge one follows", () => {
    const o = new LiveOutput();
    o.add(out(0, "x".repeat(1000)));
    o.add(out(1, "y".repeat(MAX_LIVE_CHARS + 10)));
    expect(body(o)).toBe("y".repeat(MAX_LIVE_CHARS));
    expect(o.dropped).toBe(1010);
  });

  it("stays within the bound with many small chunks, showing the newest text", () => {
    const o = new LiveOutput();
    let all = "";
    const line = (i: number) => `line ${i} ${"=".repeat(i % 97)}\n`;
    for (let i = 0; i < 40_000; i++) {
      const data = line(i);
      all += data;
      o.add(out(i, data));
    }
    const shown = body(o);
    expect(all.length).toBeGreaterThan(MAX_LIVE_CHARS);
    expect(shown).toHaveLength(MAX_LIVE_CHARS);
    // What is shown is exactly the newest text, and the count of dropped characters is exact.
    expect(all.endsWith(shown)).toBe(true);
    expect(o.dropped + shown.length).toBe(all.length);
    expect(o.text().match(NOTE)?.[1]).toBe(String(o.dropped));
    expect(o.missed).toBe(0);
  });

  it("keeps as much as fits when small chunks follow a big one", () => {
    const o = new LiveOutput();
    o.add(out(0, "B".repeat(MAX_LIVE_CHARS - 10)));
    for (let i = 1; i <= 20; i++) o.add(out(i, "s"));
    expect(body(o)).toBe("B".repeat(MAX_LIVE_CHARS - 20) + "s".repeat(20));
    expect(o.dropped + body(o).length).toBe(MAX_LIVE_CHARS - 10 + 20);
  });

  it("always shows exactly the newest text, for random chunk sizes, gaps and duplicates", () => {
    let a = 12345;
    const random = () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296);
    const o = new LiveOutput();
    let all = "";
    let seq = 0;
    let missed = 0;
    for (let i = 0; i < 3000; i++) {
      const r = random();
      const size = r < 0.01 ? Math.floor(random() * MAX_LIVE_CHARS * 1.5) : Math.floor(random() * 2000);
      const data = String.fromCharCode(65 + (i % 26)).repeat(size);
      if (random() < 0.1 && seq > 0) {
        expect(o.add(out(seq - 1 - Math.floor(random() * Math.min(seq, 3)), "dup"))).toBe(false);
        continue;
      }
      const gap = random() < 0.05 ? 1 + Math.floor(random() * 4) : 0;
      seq += gap;
      missed += gap;
      expect(o.add(out(seq, data))).toBe(true);
      seq++;
      all += data;
      expect(o.dropped).toBe(Math.max(0, all.length - MAX_LIVE_CHARS));
      if (i % 50 === 0) {
        const shown = body(o);
        expect(shown.length).toBe(Math.min(all.length, MAX_LIVE_CHARS));
        expect(all.endsWith(shown)).toBe(true);
      }
    }
    expect(o.missed).toBe(missed);
    expect(all.endsWith(body(o))).toBe(true);
  });

  it("keeps the newest text through a flood of one-character chunks", () => {
    const o = new LiveOutput();
    const n = MAX_LIVE_CHARS * 3;
    for (let i = 0; i < n; i++) o.add(out(i, String.fromCharCode(97 + (i % 26))));
    expect(body(o)).toHaveLength(MAX_LIVE_CHARS);
    expect(o.dropped + body(o).length).toBe(n);
    expect(body(o).endsWith(String.fromCharCode(97 + ((n - 1) % 26)))).toBe(true);
  });
});
