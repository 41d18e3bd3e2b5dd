import { describe, expect, it } from "vitest";

import { entries, isBadNews, kindWords, summary } from "./timeline";
import type { AgentEvent } from "./types";

function entry(kind: string, details: unknown, id = kind): AgentEvent {
  const at = "2026-12-01T12:00:00Z";
  return { event_id: id, pc_id: "pc-1", kind, at, recorded_at: at, details };
}

describe("kindWords", () => {
  it("names every kind the agent sends", () => {
    expect(kindWords("agent_started")).toBe("Agent started");
    expect(kindWords("agent_update_rolled_back")).toBe("Update rolled back");
    expect(kindWords("outbox_recovered")).toBe("Outbox drained");
  });
  it("reads a newer agent's kind by its own name", () => {
    expect(kindWords("agent_teleported")).toBe("Agent teleported");
    expect(kindWords("__")).toBe("Unnamed event");
  });
});

describe("summary", () => {
  it("says what a start was", () => {
    expect(summary(entry("agent_started", { version: "1.2.0", after_update: false }))).toBe("version 1.2.0");
    expect(summary(entry("agent_started", { version: "1.2.0", after_update: true, from: "1.1.0" }))).toBe(
      "version 1.2.0, after an update from 1.1.0",
    );
  });
  it("says what an update did", () => {
    expect(summary(entry("agent_update", { from: "1.1", to: "1.2" }))).toBe("1.1 → 1.2");
    expect(summary(entry("agent_update_refused", { to: "1.3", error: "sha-256 mismatch" }))).toBe("1.3: sha-256 mismatch");
    expect(summary(entry("agent_update_refused", { expected: "1.3", running: "1.2" }))).toBe("1.3: it runs as 1.2");
    expect(summary(entry("agent_update_rolled_back", { from: "1.3", to: "1.2" }))).toBe(
      "1.3 never came up healthy; back on 1.2",
    );
  });
  it("says how full the outbox is", () => {
    expect(summary(entry("outbox_full", { pending: 3, bytes: 2048 }))).toMatch(/^3 result\(s\) waiting, /);
  });
  it("falls back to the details as they are when their shape is unexpected", () => {
    expect(summary(entry("agent_update", { to: 7 }))).toBe("to: 7");
    expect(summary(entry("outbox_full", { pending: -1, bytes: "lots" }))).toBe("pending: -1, bytes: lots");
    expect(summary(entry("agent_teleported", { to: "mars" }))).toBe("to: mars");
    expect(summary(entry("agent_started", null))).toBe("");
    expect(summary(entry("agent_started", { truncated: true, bytes: 100000 }))).toBe("truncated: true, bytes: 100000");
  });
});

describe("isBadNews", () => {
  it("flags refusals, rollbacks and a full outbox only", () => {
    expect(["agent_update_refused", "agent_update_rolled_back", "outbox_full"].every(isBadNews)).toBe(true);
    expect(["agent_started", "agent_update", "outbox_recovered", "agent_teleported"].some(isBadNews)).toBe(false);
  });
});

describe("entries", () => {
  it("joins pages in order and keeps each entry once", () => {
    const a = entry("agent_started", {}, "a");
    const b = entry("agent_update", {}, "b");
    const c = entry("outbox_full", {}, "c");
    expect(entries([{ items: [a, b], next: "x" }, { items: [b, c] }]).map((e) => e.event_id)).toEqual(["a", "b", "c"]);
    expect(entries([])).toEqual([]);
  });
});
