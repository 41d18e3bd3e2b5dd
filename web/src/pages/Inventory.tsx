// Inventory: the fleet's software titles, each with its installs and versions, searched on the server (the box waits
// until typing pauses) and paged; a title opens the PCs that have it, in the version range typed here. Search and
// range are in the URL so a view can be shared.

import { useInfiniteQuery } from "@tanstack/react-query";
import { Link } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, LoadMore, PageTitle, useDebounced, useSearchText } from "../components";
import { CsvDownload, InventoryNav, RangeField } from "../inventory";
import { withQuery } from "../lib/api";
import { rangeFilter, titlesQuery } from "../lib/inventory";
import { keys } from "../lib/live";
import { nextCursor, rowsOf } from "../lib/paging";

const PAGE_ROWS = 100;
const SEARCH_PAUSE_MS = 300;
/// Versions listed per title before the rest are counted.
const SHOWN_VERSIONS = 6;

export function InventoryPage() {
  const { api } = useAuth();
  const [typed, setTyped] = useSearchText("q");
  const [rangeText, setRangeText] = useSearchText("version");
  const query = titlesQuery(useDebounced(typed, SEARCH_PAUSE_MS));
  const range = rangeFilter(rangeText);
  const titles = useInfiniteQuery({
    queryKey: keys.inventoryList("titles", query),
    queryFn: ({ pageParam }) => api.inventoryTitles({ ...query, cursor: pageParam, limit: PAGE_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
  });
  const shown = rowsOf(titles.data?.pages, (t) => t.name);
  return (
    <section aria-labelledby="page-title">
      <PageTitle
        actions={<CsvDownload path="/api/inventory/titles" query={query} list="software-titles" filter={[query.search]} />}
      >
        Inventory
      </PageTitle>
      <InventoryNav />
      <div className="toolbar">
        <label htmlFor="title-search">Search titles</label>
        <input
          id="title-search"
          type="search"
          value={typed}
          placeholder="name, e.g. openssl or 7-zip"
          onChange={(e) => setTyped(e.target.value)}
          aria-describedby="title-count"
        />
        <span id="title-count" className="muted" role="status">
          {titles.data ? `${shown.length}${titles.hasNextPage ? "+" : ""} title${shown.length === 1 ? "" : "s"}${query.search ? " match" : ""}` : ""}
        </span>
      </div>
      <RangeField
        id="title-range"
        value={rangeText}
        error={range.error}
        onChange={setRangeText}
        help="Applied when you open a title: the PCs whose version is in the range (e.g. <2.0 or >=1.4.2,<1.5)."
      />
      {titles.isPending ? <Loading what="software titles" /> : null}
      {titles.isError ? <ErrorNote error={titles.error} what="load the software titles" /> : null}
      {titles.data ? (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Software titles, by name</caption>
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col">Installs</th>
                <th scope="col">Versions (installs)</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((t) => (
                <tr key={t.name}>
                  <td className="wrap">
                    <Link
                      to={withQuery("/inventory/software", { name: t.name, version: range.version })}
                      aria-label={`PCs with ${t.name}${range.version ? ` ${range.version}` : ""}`}
                    >
                      {t.name}
                    </Link>
                  </td>
                  <td>{t.installs}</td>
                  <td className="wrap">
                    <ul className="inline-list">
                      {t.versions.slice(0, SHOWN_VERSIONS).map((v) => (
                        <li key={v.version}>
                          <code>{v.version || "(none)"}</code> <span className="muted">({v.installs})</span>
                        </li>
                      ))}
                      {t.versions.length > SHOWN_VERSIONS ? (
                        <li className="muted">and {t.versions.length - SHOWN_VERSIONS} more</li>
                      ) : null}
                    </ul>
                  </td>
                </tr>
              ))}
              {shown.length === 0 ? (
                <tr>
                  <td colSpan={3} className="muted">
                    {query.search
                      ? "No title matches the search."
                      : "No software reported yet: agents report it when inventory is enabled in their config."}
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore pages={titles} what="titles" />
    </section>
  );
}
