import { describe, expect, it } from "vitest";
import { compareVersions, matches, sortAgents, summarize, toggle, type AgentColumn } from "./agents";
import type { Agent } from "./types";

function agent(over: Partial<Agent> & { pc_id: string }): Agent {
  return {
    hostname: over.pc_id.toUpperCase(),
    os: "windows",
    os_version: "10.0.19045",
    arch: "x86_64",
    agent_version: "0.1.0",
    groups: [],
    uptime_secs: 100,
    rss_bytes: 1024,
    cpu_percent: 0.5,
    running: 0,
    outbox_pending: 0,
    outbox_bytes: 0,
    outbox_full: false,
    malformed_messages: 0,
    first_seen: "2026-11-01T00:00:00Z",
    last_seen: "2026-11-23T00:00:00Z",
    online: true,
    ...over,
  };
}

const ids = (agents: Agent[]) => agents.map((a) => a.pc_id);

describe("matches", () => {
  const win = agent({ pc_id: "pc-001", hostname: "Reception-Desk", groups: ["Front", "canary"], online: false });
  const lin = agent({ pc_id: "srv-7", hostname: "build", os: "linux", os_version: "6.8", agent_version: "0.10.0", online: true });

  it("matches everything with an empty or blank search", () => {
    for (const search of ["", "   ", "\t\n"]) {
      expect(matches(win, search)).toBe(true);
      expect(matches(lin, search)).toBe(true);
    }
  });

  it("finds a word in any field, case-insensitively", () => {
    expect(matches(win, "PC-001")).toBe(true);
    expect(matches(win, "reception")).toBe(true);
    expect(matches(win, "WIN")).toBe(true);
    expect(matches(win, "19045")).toBe(true);
    expect(matches(win, "front")).toBe(true);
    expect(matches(lin, "0.10")).toBe(true);
    expect(matches(lin, "6.8")).toBe(true);
    expect(matches(win, "linux")).toBe(false);
  });

  it("needs every word to match, each in any field", () => {
    expect(matches(win, "desk canary")).toBe(true);
    expect(matches(win, "  desk   canary  ")).toBe(true);
    expect(matches(win, "desk linux")).toBe(false);
    expect(matches(lin, "linux build srv")).toBe(true);
  });

  it("treats `online` and `offline` as the state", () => {
    expect(matches(win, "offline")).toBe(true);
    expect(matches(win, "online")).toBe(false);
    expect(matches(lin, "online")).toBe(true);
    expect(matches(lin, "OFFLINE")).toBe(false);
    expect(matches(win, "offline win")).toBe(true);
    expect(matches(lin, "offline linux")).toBe(false);
    expect(matches(lin, "online linux")).toBe(true);
    expect(matches(win, "online offline")).toBe(false);
  });

  it("does not read a search as a pattern", () => {
    expect(matches(win, ".*")).toBe(false);
    expect(matches(win, "[")).toBe(false);
    expect(matches(win, "(")).toBe(false);
  });

  it("matches a group by substring", () => {
    expect(matches(win, "cana")).toBe(true);
  });
});

describe("compareVersions", () => {
  it("compares dotted numbers numerically", () => {
    expect(compareVersions("0.10.0", "0.9.1")).toBeGreaterThan(0);
    expect(compareVersions("0.9.1", "0.10.0")).toBeLessThan(0);
    expect(compareVersions("1.2.3", "1.2.3")).toBe(0);
    expect(compareVersions("2.0.0", "10.0.0")).toBeLessThan(0);
    expect(compareVersions("1.2", "1.2.0")).toBeLessThan(0);
    expect(compareVersions("1.2.10", "1.2.9")).toBeGreaterThan(0);
  });

  it("falls back to text for parts that are not numbers", () => {
    expect(compareVersions("0.1.0-beta", "0.1.0-alpha")).toBeGreaterThan(0);
    expect(compareVersions("unknown", "unknown")).toBe(0);
    expect(compareVersions("", "")).toBe(0);
  });

  it("is antisymmetric", () => {
    const versions = ["0.1.0", "0.9.1", "0.10.0", "1.0.0", "1.0", "", "abc", "1.0.0-rc1", "1.0.0+build", "01.2"];
    for (const a of versions) {
      for (const b of versions) expect(Math.sign(compareVersions(a, b)), `${a} vs ${b}`).toBe(-Math.sign(compareVersions(b, a)) || 0);
    }
  });
});

describe("sortAgents", () => {
  const agents = [
    agent({ pc_id: "c", hostname: "beta", agent_version: "0.9.1", last_seen: "2026-11-23T10:00:00Z", online: true, groups: ["x"] }),
    agent({ pc_id: "a", hostname: "Alpha", agent_version: "0.10.0", last_seen: "2026-11-23T12:00:00Z", online: false, groups: ["y"] }),
    agent({ pc_id: "b", hostname: "alpha", agent_version: "0.9.1", last_seen: "not a date", online: true, groups: [] }),
    agent({ pc_id: "d", hostname: "Gamma", agent_version: "0.2.0", last_seen: "2026-11-23T11:00:00Z", online: false, groups: ["x", "z"] }),
  ];

  it("sorts versions numerically, newest last ascending and first descending", () => {
    expect(ids(sortAgents(agents, { column: "agent_version", direction: "asc" }))).toEqual(["d", "b", "c", "a"]);
    expect(ids(sortAgents(agents, { column: "agent_version", direction: "desc" }))).toEqual(["a", "b", "c", "d"]);
  });

  it("breaks ties by pc id in both directions", () => {
    // "Alpha" and "alpha" tie case-insensitively.
    expect(ids(sortAgents(agents, { column: "hostname", direction: "asc" }))).toEqual(["a", "b", "c", "d"]);
    expect(ids(sortAgents(agents, { column: "hostname", direction: "desc" }))).toEqual(["d", "c", "a", "b"]);
    expect(ids(sortAgents(agents, { column: "online", direction: "desc" }))).toEqual(["b", "c", "a", "d"]);
    expect(ids(sortAgents(agents, { column: "os", direction: "asc" }))).toEqual(["a", "b", "c", "d"]);
  });

  it("gives the same order whatever order the agents arrive in", () => {
    const columns: AgentColumn[] = ["pc_id", "hostname", "os", "agent_version", "groups", "last_seen", "online"];
    const reversed = [...agents].reverse();
    const rotated = [...agents.slice(2), ...agents.slice(0, 2)];
    for (const column of columns) {
      for (const direction of ["asc", "desc"] as const) {
        const expected = ids(sortAgents(agents, { column, direction }));
        expect(ids(sortAgents(reversed, { column, direction })), `${column} ${direction}`).toEqual(expected);
        expect(ids(sortAgents(rotated, { column, direction })), `${column} ${direction}`).toEqual(expected);
      }
    }
  });

  it("sorts last seen by time, an unreadable time as oldest", () => {
    expect(ids(sortAgents(agents, { column: "last_seen", direction: "desc" }))).toEqual(["a", "d", "c", "b"]);
    expect(ids(sortAgents(agents, { column: "last_seen", direction: "asc" }))).toEqual(["b", "c", "d", "a"]);
  });

  it("sorts by groups as text", () => {
    expect(ids(sortAgents(agents, { column: "groups", direction: "asc" }))).toEqual(["b", "c", "d", "a"]);
  });

  it("returns a copy and leaves the input alone", () => {
    const before = ids(agents);
    const sorted = sortAgents(agents, { column: "pc_id", direction: "asc" });
    expect(sorted).not.toBe(agents);
    expect(ids(agents)).toEqual(before);
    expect(ids(sorted)).toEqual(["a", "b", "c", "d"]);
    expect(sortAgents([], { column: "pc_id", direction: "desc" })).toEqual([]);
  });
});

describe("toggle", () => {
  it("sorts a new column ascending, last seen and online descending", () => {
    expect(toggle({ column: "pc_id", direction: "asc" }, "hostname")).toEqual({ column: "hostname", direction: "asc" });
    expect(toggle({ column: "pc_id", direction: "asc" }, "last_seen")).toEqual({ column: "last_seen", direction: "desc" });
    expect(toggle({ column: "pc_id", direction: "desc" }, "online")).toEqual({ column: "online", direction: "desc" });
  });

  it("flips the direction of the current column", () => {
    expect(toggle({ column: "os", direction: "asc" }, "os")).toEqual({ column: "os", direction: "desc" });
    expect(toggle({ column: "os", direction: "desc" }, "os")).toEqual({ column: "os", direction: "asc" });
    expect(toggle({ column: "last_seen", direction: "desc" }, "last_seen")).toEqual({ column: "last_seen", direction: "asc" });
  });
});

describe("summarize", () => {
  it("counts online, versions newest first, OSes most first and full outboxes sorted", () => {
    const s = summarize([
      agent({ pc_id: "z", agent_version: "0.9.1", os: "windows", online: true, outbox_full: true }),
      agent({ pc_id: "y", agent_version: "0.10.0", os: "linux", online: false }),
      agent({ pc_id: "x", agent_version: "0.9.1", os: "windows", online: false, outbox_full: true }),
      agent({ pc_id: "w", agent_version: "", os: "", online: true }),
    ]);
    expect(s.total).toBe(4);
    expect(s.online).toBe(2);
    expect(s.offline).toBe(2);
    expect(s.versions).toEqual([
      { version: "0.10.0", count: 1, online: 0 },
      { version: "0.9.1", count: 2, online: 1 },
      { version: "unknown", count: 1, online: 1 },
    ]);
    expect(s.os).toEqual([
      { os: "windows", count: 2 },
      { os: "linux", count: 1 },
      { os: "unknown", count: 1 },
    ]);
    expect(s.outboxFull).toEqual(["x", "z"]);
  });

  it("is all zeros for no agents", () => {
    expect(summarize([])).toEqual({ total: 0, online: 0, offline: 0, versions: [], os: [], outboxFull: [] });
  });
});
