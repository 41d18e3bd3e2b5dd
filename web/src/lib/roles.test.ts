import { describe, expect, it } from "vitest";

import { abilities, allows, whoText } from "./roles";

describe("allows", () => {
  it("lets each role do what the ones before it do, and no more", () => {
    expect(allows("viewer", "viewer")).toBe(true);
    expect(allows("viewer", "operator")).toBe(false);
    expect(allows("operator", "operator")).toBe(true);
    expect(allows("operator", "approver")).toBe(false);
    expect(allows("approver", "operator")).toBe(true);
    expect(allows("approver", "admin")).toBe(false);
    expect(allows("admin", "admin")).toBe(true);
  });

  it("treats a backend that names no role (before accounts) as everyone admin", () => {
    expect(allows(undefined, "admin")).toBe(true);
    expect(allows(null, "operator")).toBe(true);
  });
});

describe("abilities", () => {
  it("offers a viewer no fire, kill, approve or enrolment buttons", () => {
    expect(abilities({ role: "viewer" })).toEqual({ operate: false, approve: false, administer: false });
  });

  it("offers each other role what its routes allow", () => {
    expect(abilities({ role: "operator" })).toEqual({ operate: true, approve: false, administer: false });
    expect(abilities({ role: "approver" })).toEqual({ operate: true, approve: true, administer: false });
    expect(abilities({ role: "admin" })).toEqual({ operate: true, approve: true, administer: true });
  });
});

describe("whoText", () => {
  it("names the account and its role, or the claimed name of a static token as admin", () => {
    expect(whoText({ actor: "ada", user: "ada", role: "viewer" })).toEqual({ name: "ada", role: "viewer" });
    expect(whoText({ actor: "bob", user: null, role: "admin" })).toEqual({ name: "bob", role: "admin" });
    expect(whoText({ actor: "bob" })).toEqual({ name: "bob", role: "admin" });
  });
});
