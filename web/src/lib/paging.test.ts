import { describe, expect, it } from "vitest";
import { everyPage, nextCursor, rowsOf, type PageOf } from "./paging";

describe("nextCursor", () => {
  it("is the page's next, or nothing at the end", () => {
    expect(nextCursor({ items: [1], next: "abc" })).toBe("abc");
    expect(nextCursor({ items: [1], next: null })).toBeUndefined();
    expect(nextCursor({ items: [] })).toBeUndefined();
    expect(nextCursor({ items: [1], next: "" })).toBeUndefined();
  });
});

describe("rowsOf", () => {
  it("joins the pages in order and shows each key once", () => {
    const pages: PageOf<{ id: string }>[] = [
      { items: [{ id: "a" }, { id: "b" }], next: "b" },
      { items: [{ id: "b" }, { id: "c" }], next: null },
    ];
    expect(rowsOf(pages, (r) => r.id).map((r) => r.id)).toEqual(["a", "b", "c"]);
    expect(rowsOf(undefined, (r: { id: string }) => r.id)).toEqual([]);
  });
});

describe("everyPage", () => {
  it("follows next to the end", async () => {
    const pages: Record<string, PageOf<number>> = {
      start: { items: [1, 2], next: "p2" },
      p2: { items: [3], next: "p3" },
      p3: { items: [4], next: null },
    };
    const asked: (string | undefined)[] = [];
    const rows = await everyPage(async (cursor) => {
      asked.push(cursor);
      return pages[cursor ?? "start"] as PageOf<number>;
    });
    expect(rows).toEqual([1, 2, 3, 4]);
    expect(asked).toEqual([undefined, "p2", "p3"]);
  });

  it("stops when a backend repeats a cursor or never ends", async () => {
    expect(await everyPage(async () => ({ items: [1], next: "same" }))).toEqual([1, 1]);
    let n = 0;
    const rows = await everyPage(async () => ({ items: [n], next: `c${n++}` }), 5);
    expect(rows).toEqual([0, 1, 2, 3, 4]);
  });
});
