import { describe, expect, it } from "vitest";
import { auditTargetLink, detailsText } from "./audit";

describe("detailsText", () => {
  it("is empty for no details", () => {
    expect(detailsText(null)).toBe("");
    expect(detailsText(undefined)).toBe("");
    expect(detailsText({})).toBe("");
  });

  it("writes an object's pairs in one line, strings bare and the rest as compact JSON", () => {
    expect(detailsText({ job: "patch", version: "1.2", pcs: ["a", "b"], all: false, n: 3, nested: { x: 1 }, none: null })).toBe(
      'job: patch, version: 1.2, pcs: ["a","b"], all: false, n: 3, nested: {"x":1}, none: null',
    );
  });

  it("writes other values as they are or as JSON", () => {
    expect(detailsText("just text")).toBe("just text");
    expect(detailsText(42)).toBe("42");
    expect(detailsText(true)).toBe("true");
    expect(detailsText([1, "two", { three: 3 }])).toBe('[1,"two",{"three":3}]');
    expect(detailsText("")).toBe("");
  });

  it("caps the text, ending with an ellipsis, at exactly the limit", () => {
    const long = { script: "x".repeat(10_000) };
    const text = detailsText(long);
    expect(text).toHaveLength(300);
    expect(text.endsWith("…")).toBe(true);
    expect(text.startsWith("script: xxx")).toBe(true);
    expect(detailsText("y".repeat(1000), 50)).toBe(`${"y".repeat(49)}…`);
    expect(detailsText([..."z".repeat(500)], 20)).toHaveLength(20);
  });

  it("leaves text at or under the limit alone", () => {
    expect(detailsText("y".repeat(300))).toBe("y".repeat(300));
    expect(detailsText("y".repeat(301))).toHaveLength(300);
    expect(detailsText("abc", 3)).toBe("abc");
    expect(detailsText("abcd", 3)).toBe("ab…");
  });

  it("keeps newlines and markup as plain text (React escapes it)", () => {
    expect(detailsText({ reason: "<script>alert(1)</script>" })).toBe("reason: <script>alert(1)</script>");
  });
});

describe("auditTargetLink", () => {
  it("links executions' actions to the activity page", () => {
    for (const action of ["exec", "approve", "reject", "kill", "run"]) {
      expect(auditTargetLink({ action, target: "0f3a-exec_1" }), action).toBe("/activity/0f3a-exec_1");
    }
  });

  it("links jobs' actions to the job page, except a deleted job", () => {
    for (const action of ["job-create", "revoke", "unrevoke", "kill-job"]) {
      expect(auditTargetLink({ action, target: "patch-tuesday" }), action).toBe("/jobs/patch-tuesday");
    }
    expect(auditTargetLink({ action: "job-delete", target: "patch-tuesday" })).toBeNull();
  });

  it("does not link actions it has no page for", () => {
    for (const action of ["login", "config-set", "", "EXEC", "exec ", "__proto__"]) {
      expect(auditTargetLink({ action, target: "abc" }), action).toBeNull();
    }
  });

  it("refuses targets that are not ids", () => {
    const hostile = [
      "../x",
      "..",
      "/etc/passwd",
      "a/b",
      "javascript:alert(1)",
      "JavaScript:alert(1)",
      "http://evil.example",
      "//evil.example",
      "a?b=c",
      "a#b",
      "a%2F..",
      "a b",
      "a\nb",
      "",
      "A",
      "x".repeat(65),
      "é",
      "\u0000",
    ];
    for (const target of hostile) {
      expect(auditTargetLink({ action: "exec", target }), JSON.stringify(target)).toBeNull();
      expect(auditTargetLink({ action: "revoke", target }), JSON.stringify(target)).toBeNull();
    }
    expect(auditTargetLink({ action: "exec", target: "x".repeat(64) })).toBe(`/activity/${"x".repeat(64)}`);
  });
});
