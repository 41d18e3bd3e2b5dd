import { describe, expect, it } from "vitest";
import { seenInUrl } from "./searchtext";

describe("seenInUrl", () => {
  it("does not follow the URL through the box's own values as they arrive", () => {
    // Typed "l", "li", "lib": the URL catches up one navigation at a time.
    let written = ["l", "li", "lib"];
    for (const [url, rest] of [
      ["l", ["li", "lib"]],
      ["li", ["lib"]],
      ["lib", []],
    ] as const) {
      const seen = seenInUrl(written, url);
      expect(seen).toEqual({ written: rest, follow: false });
      written = seen.written;
    }
  });

  it("takes coalesced navigations as done", () => {
    expect(seenInUrl(["l", "li", "lib"], "lib")).toEqual({ written: [], follow: false });
    expect(seenInUrl(["a", "", "b"], "")).toEqual({ written: ["b"], follow: false });
  });

  it("follows a URL that came from elsewhere, and forgets what was pending", () => {
    expect(seenInUrl([], "onerror")).toEqual({ written: [], follow: true });
    expect(seenInUrl(["l", "li"], "something else")).toEqual({ written: [], follow: true });
  });
});
