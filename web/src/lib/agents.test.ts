import { describe, expect, it } from "vitest";
import { agentQuery, agentSort, ariaSort, compareVersions, forgetPrompt, hostFigures, MAX_SEARCH_CHARS, sortQuery, statusOf, summarize } from "./agents";
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
    status: "online",
    ...over,
  };
}

describe("agentQuery", () => {
  it("sends the words and the status the server filters on", () => {
    expect(agentQuery("  offline   win ", "")).toEqual({ search: "offline win" });
    expect(agentQuery("", "stale")).toEqual({ status: "stale" });
    expect(agentQuery("lab", "online")).toEqual({ search: "lab", status: "online" });
    expect(agentQuery("", "")).toEqual({});
  });

  it("cuts what the server would refuse and ignores an unknown status", () => {
    expect(agentQuery("a b c d e f g h i j", "").search).toBe("a b c d e f g h");
    expect(agentQuery("x".repeat(500), "").search?.length).toBe(MAX_SEARCH_CHARS);
    expect(agentQuery("", "gone")).toEqual({});
  });
});

describe("forgetPrompt", () => {
  it("says what goes, what stays, and warns when the agent is still online", () => {
    expect(forgetPrompt("pc-1", "stale")).toBe(
      "Forget pc-1? It leaves the agent lists and target counts; its results and the audit stay. If it ever heartbeats again, it comes back as a new agent.",
    );
    expect(forgetPrompt("pc-1", "online")).toContain("It is online: unless it is uninstalled first");
  });
});

describe("statusOf", () => {
  it("is the API's status, or online/offline from an older backend", () => {
    expect(statusOf(agent({ pc_id: "a", status: "stale", online: false }))).toBe("stale");
    expect(statusOf(agent({ pc_id: "a", status: "" as never, online: false }))).toBe("offline");
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

describe("sorting by the host's figures", () => {
  it("reads the order from the URL, the pc id for anything else", () => {
    expect(agentSort("cpu")).toBe("cpu");
    expect(agentSort("memory")).toBe("memory");
    expect(agentSort("CPU")).toBe("pc_id");
    expect(agentSort(null)).toBe("pc_id");
  });

  it("asks the server for an order only when it is not the default", () => {
    expect(sortQuery("pc_id")).toEqual({});
    expect(sortQuery("cpu")).toEqual({ sort: "cpu" });
  });

  it("marks the sorted column: the pc id A to Z, the figures highest first", () => {
    expect(ariaSort("cpu", "cpu")).toBe("descending");
    expect(ariaSort("pc_id", "pc_id")).toBe("ascending");
    expect(ariaSort("memory", "cpu")).toBe("none");
  });

  it("reads the heartbeat's figures, none where they are absent or not percentages", () => {
    expect(hostFigures(agent({ pc_id: "a", host_cpu_percent: 42.5, host_mem_percent: 61 }))).toEqual({ cpu: 42.5, memory: 61 });
    expect(hostFigures(agent({ pc_id: "b" }))).toEqual({ cpu: null, memory: null });
    expect(hostFigures(agent({ pc_id: "c", host_cpu_percent: Number.NaN, host_mem_percent: 250 }))).toEqual({ cpu: null, memory: 100 });
    expect(hostFigures(agent({ pc_id: "e", host_cpu_percent: null }))).toEqual({ cpu: null, memory: null });
    const wrong = { pc_id: "d", host_cpu_percent: "50", host_mem_percent: -1 } as unknown as Partial<Agent> & { pc_id: string };
    expect(hostFigures(agent(wrong))).toEqual({ cpu: null, memory: null });
  });
});
