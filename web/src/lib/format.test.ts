import { describe, expect, it } from "vitest";
import { ago, bytes, millis, span, stamp, took } from "./format";

const NOW = Date.parse("2026-11-23T12:00:00Z");
const before = (ms: number) => new Date(NOW - ms).toISOString();

describe("ago", () => {
  it("says how long ago in the largest unit", () => {
    expect(ago(before(12_000), NOW)).toBe("12 s ago");
    expect(ago(before(5 * 60_000 + 30_000), NOW)).toBe("5 min ago");
    expect(ago(before(3 * 3_600_000), NOW)).toBe("3 h ago");
    expect(ago(before(2 * 86_400_000), NOW)).toBe("2 d ago");
    expect(ago(before(400 * 86_400_000), NOW)).toBe("400 d ago");
  });

  it("says just now for under two seconds either way", () => {
    expect(ago(before(0), NOW)).toBe("just now");
    expect(ago(before(1400), NOW)).toBe("just now");
    expect(ago(before(-1400), NOW)).toBe("just now");
  });

  it("says `in` for future times (a clock ahead of ours)", () => {
    expect(ago(before(-4 * 60_000), NOW)).toBe("in 4 min");
    expect(ago(before(-30_000), NOW)).toBe("in 30 s");
    expect(ago(before(-3 * 86_400_000), NOW)).toBe("in 3 d");
  });

  it("shows a dash for nothing and for dates it cannot read", () => {
    for (const at of [null, undefined, "", "not a date", "2026-13-45T99:99:99Z", "NaN", "yesterday"]) {
      expect(ago(at, NOW), String(at)).toBe("—");
    }
  });

  it("reads offsets", () => {
    expect(ago("2026-11-23T13:00:00+01:00", NOW)).toBe("just now");
    expect(ago("2026-11-23T11:59:00.500Z", NOW)).toBe("1 min ago");
  });

  it("uses the current time by default", () => {
    expect(ago(new Date().toISOString())).toBe("just now");
  });
});

describe("span", () => {
  it("shows the largest unit, rounded down", () => {
    expect(span(0)).toBe("0 s");
    expect(span(45)).toBe("45 s");
    expect(span(59.4)).toBe("59 s");
    expect(span(60)).toBe("1 min");
    expect(span(3599)).toBe("59 min");
    expect(span(3600)).toBe("1 h");
    expect(span(86_399)).toBe("23 h");
    expect(span(86_400)).toBe("1 d");
    expect(span(10 * 86_400 + 5)).toBe("10 d");
  });

  it("shows negative spans as zero", () => {
    expect(span(-5)).toBe("0 s");
  });

  it("shows a dash for a number it cannot use", () => {
    expect(span(Number.NaN)).toBe("—");
    expect(span(Number.POSITIVE_INFINITY)).toBe("—");
    expect(span(undefined as unknown as number)).toBe("—");
  });
});

describe("took", () => {
  const start = "2026-11-23T12:00:00.000Z";
  it("shows milliseconds, tenths of seconds, then the largest unit", () => {
    expect(took(start, "2026-11-23T12:00:00.850Z")).toBe("850 ms");
    expect(took(start, start)).toBe("0 ms");
    expect(took(start, "2026-11-23T12:00:04.200Z")).toBe("4.2 s");
    expect(took(start, "2026-11-23T12:03:00.000Z")).toBe("3 min");
    expect(took(start, "2026-11-23T14:00:00.000Z")).toBe("2 h");
  });

  it("shows a dash without both times, with unreadable times or when it finished before it started", () => {
    expect(took(null, start)).toBe("—");
    expect(took(start, null)).toBe("—");
    expect(took(undefined, undefined)).toBe("—");
    expect(took("garbage", start)).toBe("—");
    expect(took(start, "garbage")).toBe("—");
    expect(took(start, "2026-11-23T11:59:59.000Z")).toBe("—");
  });
});

describe("millis", () => {
  it("shows each unit that is not zero", () => {
    expect(millis(0)).toBe("0 ms");
    expect(millis(250)).toBe("250 ms");
    expect(millis(1000)).toBe("1 s");
    expect(millis(90_000)).toBe("1 min 30 s");
    expect(millis(3_600_000)).toBe("1 h");
    expect(millis(86_400_000 + 61_000)).toBe("1 d 1 min 1 s");
    expect(millis(7 * 86_400_000)).toBe("7 d");
  });

  it("rounds to whole seconds above one second", () => {
    expect(millis(1499)).toBe("1 s");
    expect(millis(59_600)).toBe("1 min");
  });

  it("shows a dash for nothing and for a number it cannot use", () => {
    expect(millis(null)).toBe("—");
    expect(millis(undefined)).toBe("—");
    expect(millis(Number.NaN)).toBe("—");
    expect(millis(Number.POSITIVE_INFINITY)).toBe("—");
  });
});

describe("bytes", () => {
  it("shows bytes below 1 KiB and one decimal in binary units above", () => {
    expect(bytes(0)).toBe("0 B");
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1023)).toBe("1023 B");
    expect(bytes(1024)).toBe("1.0 KiB");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(64 * 1024 * 1024)).toBe("64.0 MiB");
    expect(bytes(3 * 1024 ** 3)).toBe("3.0 GiB");
    expect(bytes(2 * 1024 ** 4)).toBe("2.0 TiB");
    // Beyond the largest unit it keeps counting in it.
    expect(bytes(2048 * 1024 ** 4)).toBe("2048.0 TiB");
  });

  it("shows nonsense as zero bytes", () => {
    expect(bytes(-5)).toBe("0 B");
    expect(bytes(Number.NaN)).toBe("0 B");
    expect(bytes(Number.NEGATIVE_INFINITY)).toBe("0 B");
    expect(bytes(10.6)).toBe("11 B");
  });
});

describe("stamp", () => {
  it("shows local date and time", () => {
    // A time without an offset is local time, so this holds in any time zone.
    expect(stamp("2026-11-23T14:05:09")).toBe("2026-11-23 14:05:09");
    expect(stamp("2026-01-02T03:04:05")).toBe("2026-01-02 03:04:05");
    const d = new Date("2026-11-23T14:05:09Z");
    const pad = (n: number) => String(n).padStart(2, "0");
    expect(stamp("2026-11-23T14:05:09Z")).toBe(
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`,
    );
  });

  it("shows a dash for nothing and for dates it cannot read", () => {
    for (const at of [null, undefined, "", "not a date", "2026-02-30T25:00:00Z"]) expect(stamp(at), String(at)).toBe("—");
  });
});
