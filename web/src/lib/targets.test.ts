import { describe, expect, it } from "vitest";
import { describeTargets, NO_TARGET } from "./targets";
import type { Targets } from "./types";

const targets = (patch: Partial<Targets>): Targets => ({ all: false, groups: [], pcs: [], ...patch });

describe("describeTargets", () => {
  it("says every agent for all, whatever else is listed", () => {
    expect(describeTargets(targets({ all: true }))).toBe("every agent");
    expect(describeTargets(targets({ all: true, groups: ["canary"], pcs: ["pc-1"] }))).toBe("every agent");
  });

  it("names one group or several", () => {
    expect(describeTargets(targets({ groups: ["canary"] }))).toBe("group canary");
    expect(describeTargets(targets({ groups: ["canary", "wave1"] }))).toBe("groups canary, wave1");
  });

  it("names up to three PCs and counts more", () => {
    expect(describeTargets(targets({ pcs: ["pc-1"] }))).toBe("PC pc-1");
    expect(describeTargets(targets({ pcs: ["pc-1", "pc-2", "pc-3"] }))).toBe("PCs pc-1, pc-2, pc-3");
    expect(describeTargets(targets({ pcs: ["pc-1", "pc-2", "pc-3", "pc-4"] }))).toBe("4 PCs");
  });

  it("joins groups and PCs with and", () => {
    expect(describeTargets(targets({ groups: ["canary"], pcs: ["pc-1", "pc-2"] }))).toBe("group canary and PCs pc-1, pc-2");
    expect(describeTargets(targets({ groups: ["a", "b"], pcs: ["1", "2", "3", "4", "5"] }))).toBe("groups a, b and 5 PCs");
  });

  it("says nobody when the targets name no one", () => {
    expect(describeTargets(targets({}))).toBe("nobody");
  });

  it("says to choose at run time for a job without targets of its own", () => {
    expect(describeTargets(null)).toBe(NO_TARGET);
    expect(describeTargets(undefined)).toBe(NO_TARGET);
    expect(NO_TARGET).toContain("choose");
  });
});
