// Lists the API serves a page at a time (`{items, next}`, a keyset cursor): what the next page is asked with, the
// rows of the pages loaded so far, and reading a whole list where a page needs every row (the Fleet's counts).

/// One page of a list as the API answers it.
export interface PageOf<T> {
  items: T[];
  next?: string | null;
}

/// The cursor that asks for the page after `last`; undefined at the end of the list (as `useInfiniteQuery`'s
/// `getNextPageParam` wants it).
export function nextCursor<T>(last: PageOf<T>): string | undefined {
  return last.next ? last.next : undefined;
}

/// The rows of the pages loaded so far, in the list's order. The API never lists a row twice while rows are being
/// added; a refetch of the first pages while later ones are loaded could, so each key shows once.
export function rowsOf<T>(pages: readonly PageOf<T>[] | undefined, key: (row: T) => string): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const page of pages ?? []) {
    for (const row of page.items) {
      const k = key(row);
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(row);
    }
  }
  return out;
}

/// Every row of a list, page after page, at most `maxPages` requests (so a backend that never ends the list
/// cannot keep the page loading forever); `load(cursor)` fetches one page.
export async function everyPage<T>(
  load: (cursor: string | undefined) => Promise<PageOf<T>>,
  maxPages = 200,
): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | undefined;
  const seen = new Set<string>();
  for (let i = 0; i < maxPages; i++) {
    const page = await load(cursor);
    rows.push(...page.items);
    cursor = nextCursor(page);
    if (cursor === undefined || seen.has(cursor)) return rows;
    seen.add(cursor);
  }
  return rows;
}
