// The PCs that have one software title (`?name=`, exactly, case-insensitively; `*` matches any run), optionally in a
// version range (`?version=`), each linking to its agent page; paged, downloadable as CSV, and handed to the Run
// dialog as targets. The range is checked here as the server checks it; what the server still refuses is shown.

import { useInfiniteQuery } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, LoadMore, PageTitle, PcLink, useDebounced, useSearchText, When } from "../components";
import { CsvDownload, InventoryNav, RangeField, RunOnPcs } from "../inventory";
import { withQuery } from "../lib/api";
import { type SoftwareFilter, rangeFilter } from "../lib/inventory";
import { keys } from "../lib/live";
import { everyPage, nextCursor, rowsOf } from "../lib/paging";

const PAGE_ROWS = 100;

export function InventorySoftwarePage() {
  const { api } = useAuth();
  const [params] = useSearchParams();
  const name = params.get("name") ?? "";
  const [rangeText, setRange] = useSearchText("version");
  const range = rangeFilter(useDebounced(rangeText, 300));
  const typedRange = rangeFilter(rangeText);
  const filter: SoftwareFilter = { name, version: range.version };
  const ready = name !== "" && !range.error;
  const rows = useInfiniteQuery({
    queryKey: keys.inventoryList("software", filter),
    queryFn: ({ pageParam }) => api.inventorySoftware({ ...filter, cursor: pageParam, limit: PAGE_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
    enabled: ready,
  });
  const shown = rowsOf(rows.data?.pages, (r) => `${r.pc_id}\u0000${r.source}\u0000${r.id}`);
  const pcs = new Set(shown.map((r) => r.pc_id)).size;
  const what = `PCs with ${name}${filter.version ? ` ${filter.version}` : ""}`;
  return (
    <section aria-labelledby="page-title">
      <PageTitle
        actions={
          ready ? (
            <>
              <CsvDownload path="/api/inventory/software" query={{ ...filter }} list="software" filter={[name, filter.version]} />
              <RunOnPcs
                from={what}
                load={() => everyPage((cursor) => api.inventorySoftware({ ...filter, cursor, limit: 1000 }))}
              />
            </>
          ) : null
        }
      >
        {name ? <>PCs with {name}</> : "PCs with a title"}
      </PageTitle>
      <InventoryNav />
      <p>
        <Link to={withQuery("/inventory", { version: rangeText })}>← Software titles</Link>
      </p>
      {name === "" ? <p className="muted">Choose a title from the software titles to see the PCs that have it.</p> : null}
      <div className="toolbar">
        <RangeField id="software-range" value={rangeText} error={typedRange.error} onChange={setRange} />
        <span className="muted" role="status">
          {rows.data
            ? `${shown.length}${rows.hasNextPage ? "+" : ""} install${shown.length === 1 ? "" : "s"} on ${pcs} PC${pcs === 1 ? "" : "s"}`
            : ""}
        </span>
      </div>
      {ready && rows.isPending ? <Loading what="the PCs" /> : null}
      {rows.isError ? <ErrorNote error={rows.error} what="load the PCs" /> : null}
      {ready && rows.data ? (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">{what}, by PC</caption>
            <thead>
              <tr>
                <th scope="col">PC</th>
                <th scope="col">Title</th>
                <th scope="col">Version</th>
                <th scope="col">Source</th>
                <th scope="col">Arch</th>
                <th scope="col">Publisher</th>
                <th scope="col">Since</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((r) => (
                <tr key={`${r.pc_id}\u0000${r.source}\u0000${r.id}`}>
                  <td>
                    <PcLink pc={r.pc_id} />
                  </td>
                  <td className="wrap">{r.name}</td>
                  <td>
                    <code>{r.version}</code>
                  </td>
                  <td>{r.source}</td>
                  <td>{r.arch || <span className="muted">—</span>}</td>
                  <td className="wrap">{r.publisher || <span className="muted">—</span>}</td>
                  <td>
                    <When at={r.since} />
                  </td>
                </tr>
              ))}
              {shown.length === 0 ? (
                <tr>
                  <td colSpan={7} className="muted">
                    {filter.version ? "No PC has it in that version range." : "No PC has it."}
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore pages={rows} what="PCs" />
    </section>
  );
}
