import { describe, expect, it } from "vitest";

import { operatorName } from "./apitoken";

describe("operatorName", () => {
  it("is what the backend records: lowercase, other characters as dashes, trimmed", () => {
    expect(operatorName("Jane.Doe")).toEqual({ name: "jane-doe" });
    expect(operatorName("  bob  ")).toEqual({ name: "bob" });
    expect(operatorName("ops@example.com")).toEqual({ name: "ops-example-com" });
    expect(operatorName("--x--")).toEqual({ name: "x" });
    expect(operatorName("a".repeat(100))).toEqual({ name: "a".repeat(64) });
  });

  it("leaves an empty name empty (the backend then records `anonymous`)", () => {
    expect(operatorName("   ")).toEqual({ name: "" });
  });

  it("refuses what a header cannot carry or what leaves nothing", () => {
    for (const raw of ["José", "山田", "bob\u0000", "tab\there"]) expect(operatorName(raw)).toHaveProperty("error");
    expect(operatorName("...")).toEqual({ error: "your name needs at least one letter or digit" });
  });
});
