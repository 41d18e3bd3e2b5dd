import { describe, expect, it } from "vitest";
import { keys, parseChange, stale, type QueryKey } from "./live";
import type { Change } from "./types";

const change = (topic: string, ids: string[] = []): Change => ({ topic: topic as Change["topic"], ids });

/// Whether `prefix` covers `key` the way TanStack Query matches a partial query key.
const covers = (prefix: QueryKey, key: readonly string[]) => prefix.every((part, i) => key[i] === part);
const anyCovers = (prefixes: QueryKey[], key: readonly string[]) => prefixes.some((p) => covers(p, key));

describe("stale", () => {
  it("agents: the list, and every agent page without ids", () => {
    expect(stale(change("agents"))).toEqual([["agents"], ["agent"]]);
  });

  it("agents: the list and the named agents with ids", () => {
    expect(stale(change("agents", ["pc-1", "pc-2"]))).toEqual([["agents"], ["agent", "pc-1"], ["agent", "pc-2"]]);
    const prefixes = stale(change("agents", ["pc-1"]));
    expect(anyCovers(prefixes, keys.agent("pc-1"))).toBe(true);
    expect(anyCovers(prefixes, keys.agent("pc-2"))).toBe(false);
    expect(anyCovers(prefixes, keys.agents)).toBe(true);
    expect(anyCovers(prefixes, keys.jobs)).toBe(false);
  });

  it("results: results, the executions list and the named executions' pages", () => {
    expect(stale(change("results", ["e1"]))).toEqual([
      ["results"],
      ["executions"],
      ["execution", "e1"],
      ["targets", "e1"],
      ["exec-results", "e1"],
    ]);
    const prefixes = stale(change("results", ["e1"]));
    expect(anyCovers(prefixes, keys.results("pc_id=pc-1"))).toBe(true);
    expect(anyCovers(prefixes, keys.executions("job_id=x"))).toBe(true);
    expect(anyCovers(prefixes, keys.execution("e1"))).toBe(true);
    expect(anyCovers(prefixes, keys.targets("e1"))).toBe(true);
    expect(anyCovers(prefixes, keys.execResults("e1"))).toBe(true);
    expect(anyCovers(prefixes, keys.execution("e2"))).toBe(false);
    expect(anyCovers(prefixes, keys.agents)).toBe(false);
  });

  it("results without ids: every execution's pages", () => {
    expect(stale(change("results"))).toEqual([
      ["results"],
      ["executions"],
      ["execution"],
      ["targets"],
      ["exec-results"],
      ["schedules"],
      ["schedule"],
    ]);
  });

  it("executions: the list and the named executions' pages", () => {
    expect(stale(change("executions", ["e1", "e2"]))).toEqual([
      ["executions"],
      ["execution", "e1"],
      ["execution", "e2"],
      ["targets", "e1"],
      ["targets", "e2"],
    ]);
    expect(stale(change("executions"))).toEqual([["executions"], ["execution"], ["targets"], ["schedules"], ["schedule"]]);
    expect(anyCovers(stale(change("executions", ["e1"])), keys.execResults("e1"))).toBe(false);
  });

  it("schedules: the list and the named schedules", () => {
    expect(stale(change("schedules", ["nightly"]))).toEqual([["schedules"], ["schedule", "nightly"]]);
    expect(stale(change("schedules"))).toEqual([["schedules"], ["schedule"]]);
    const prefixes = stale(change("schedules", ["nightly"]));
    expect(anyCovers(prefixes, keys.schedules)).toBe(true);
    expect(anyCovers(prefixes, keys.schedule("nightly"))).toBe(true);
    expect(anyCovers(prefixes, keys.schedule("weekly"))).toBe(false);
    expect(anyCovers(prefixes, keys.jobs)).toBe(false);
    expect(anyCovers(prefixes, keys.executions(""))).toBe(false);
  });

  it("executions and results of a schedule's occurrences: that schedule, for its fires' statuses", () => {
    for (const topic of ["executions", "results"]) {
      const prefixes = stale(change(topic, ["echo-every-10s-20261123t120010z", "echo-every-10s-20261123t120020z"]));
      expect(anyCovers(prefixes, keys.schedules), topic).toBe(true);
      expect(anyCovers(prefixes, keys.schedule("echo-every-10s")), topic).toBe(true);
      expect(anyCovers(prefixes, keys.schedule("echo")), topic).toBe(false);
      // Named once however many of its executions changed.
      expect(prefixes.filter((p) => p[0] === "schedule"), topic).toEqual([["schedule", "echo-every-10s"]]);
    }
  });

  it("executions and results of no schedule leave the schedules alone", () => {
    for (const topic of ["executions", "results"]) {
      const prefixes = stale(change(topic, ["0190c0de-7a11-7000-8000-000000000001", "echo-20261123", "x-20261123t120010"]));
      expect(anyCovers(prefixes, keys.schedules), topic).toBe(false);
      expect(anyCovers(prefixes, keys.schedule("echo")), topic).toBe(false);
    }
  });

  it("audit: the audit log, with or without ids", () => {
    const audit = [["audit"], ["jobs"], ["preview"], ["agent-config"], ["inventory", "facts"]];
    expect(stale(change("audit"))).toEqual(audit);
    expect(stale(change("audit", ["whatever"]))).toEqual(audit);
  });

  it("jobs: the job list, every preview and the jobs' facts", () => {
    expect(stale(change("jobs"))).toEqual([["jobs"], ["preview"], ["inventory", "facts"]]);
    expect(stale(change("jobs", ["j1"]))).toEqual([["jobs"], ["preview"], ["inventory", "facts"]]);
    expect(anyCovers(stale(change("jobs")), keys.preview("j1", "{}"))).toBe(true);
    expect(anyCovers(stale(change("jobs")), keys.inventoryList("facts", { app: "j1" }))).toBe(true);
    expect(anyCovers(stale(change("jobs")), keys.inventoryList("titles", {}))).toBe(false);
  });

  it("inventory: every fleet-wide inventory list, and the named PCs' inventory and change log", () => {
    const prefixes = stale(change("inventory", ["pc-1"]));
    expect(prefixes).toEqual([["inventory"], ["agent-inventory", "pc-1"]]);
    for (const list of ["titles", "software", "hardware", "summary", "facts"]) {
      expect(anyCovers(prefixes, keys.inventoryList(list, { search: "x" })), list).toBe(true);
    }
    expect(anyCovers(prefixes, keys.agentInventory("pc-1"))).toBe(true);
    expect(anyCovers(prefixes, keys.agentChanges("pc-1", "kind=software"))).toBe(true);
    expect(anyCovers(prefixes, keys.agentInventory("pc-2"))).toBe(false);
    expect(anyCovers(prefixes, keys.agentChanges("pc-2", ""))).toBe(false);
    expect(anyCovers(prefixes, keys.agent("pc-1"))).toBe(false);
    expect(anyCovers(prefixes, keys.results("pc_id=pc-1"))).toBe(false);
    // Without ids: every PC's.
    expect(stale(change("inventory"))).toEqual([["inventory"], ["agent-inventory"]]);
    expect(anyCovers(stale(change("inventory")), keys.agentChanges("pc-9", ""))).toBe(true);
  });

  it("no other topic makes inventory stale", () => {
    for (const topic of ["agents", "results", "executions", "timeline"]) {
      const prefixes = stale(change(topic, ["pc-1"]));
      expect(anyCovers(prefixes, keys.inventoryList("titles", {})), topic).toBe(false);
      expect(anyCovers(prefixes, keys.agentInventory("pc-1")), topic).toBe(false);
    }
  });

  it("timeline: the timelines of the agents it names, and no list", () => {
    expect(stale(change("timeline", ["pc-1"]))).toEqual([["timeline", "pc-1"]]);
    expect(anyCovers(stale(change("timeline", ["pc-1"])), keys.timeline("pc-1"))).toBe(true);
    expect(anyCovers(stale(change("timeline", ["pc-1"])), keys.timeline("pc-2"))).toBe(false);
    expect(anyCovers(stale(change("timeline", ["pc-1"])), keys.agents)).toBe(false);
    expect(anyCovers(stale(change("timeline")), keys.timeline("pc-2"))).toBe(true);
  });

  it("all and unknown topics: everything", () => {
    for (const topic of ["all", "something-new", "", "AGENTS", "__proto__", "toString"]) {
      const prefixes = stale(change(topic, ["x"]));
      expect(prefixes, topic).toEqual([[]]);
      expect(anyCovers(prefixes, keys.session)).toBe(true);
      expect(anyCovers(prefixes, keys.agent("x"))).toBe(true);
    }
  });

  it("never returns an empty list, so a change always refreshes something", () => {
    for (const topic of ["agents", "results", "executions", "audit", "jobs", "timeline", "inventory", "schedules", "all", "?"]) {
      for (const ids of [[], ["a"], ["a", "b"]]) expect(stale(change(topic, ids)).length).toBeGreaterThan(0);
    }
  });
});

describe("parseChange", () => {
  it("parses a change", () => {
    expect(parseChange('{"topic":"agents","ids":["pc-1","pc-2"]}')).toEqual({ topic: "agents", ids: ["pc-1", "pc-2"] });
    expect(parseChange('{"topic":"audit","ids":[]}')).toEqual({ topic: "audit", ids: [] });
  });

  it("defaults missing or malformed ids to none, and drops ids that are not strings", () => {
    expect(parseChange('{"topic":"jobs"}')).toEqual({ topic: "jobs", ids: [] });
    expect(parseChange('{"topic":"jobs","ids":"pc-1"}')).toEqual({ topic: "jobs", ids: [] });
    expect(parseChange('{"topic":"jobs","ids":{"0":"a"}}')).toEqual({ topic: "jobs", ids: [] });
    expect(parseChange('{"topic":"agents","ids":["a",1,null,{},["b"],"c",true]}')).toEqual({ topic: "agents", ids: ["a", "c"] });
  });

  it("keeps an unknown topic, which then refreshes everything", () => {
    const parsed = parseChange('{"topic":"brand-new","ids":["x"]}');
    expect(parsed).toEqual({ topic: "brand-new", ids: ["x"] });
    expect(stale(parsed as Change)).toEqual([[]]);
  });

  it("returns null for garbage", () => {
    for (const data of [
      "",
      " ",
      "not json",
      "{",
      "{'topic':'agents'}",
      "null",
      "true",
      "42",
      '"agents"',
      "[]",
      '["agents"]',
      "{}",
      '{"topic":null}',
      '{"topic":7,"ids":[]}',
      '{"topic":["agents"]}',
      '{"ids":["a"]}',
      '{"topic":"agents"}garbage',
      "\u0000",
    ]) {
      expect(parseChange(data), JSON.stringify(data)).toBeNull();
    }
  });

  it("is not fooled by prototype keys", () => {
    const parsed = parseChange('{"__proto__":{"topic":"agents"},"ids":["a"]}');
    expect(parsed).toBeNull();
    expect(({} as { topic?: unknown }).topic).toBeUndefined();
  });
});
