// Hardware across the fleet: how many PCs have each OS, OS build, manufacturer, model and memory size (each value
// links to the PCs with it), and the PCs' hardware, filtered by the URL's `os`, `os_build`, `manufacturer`, `model`,
// `memory_below` and `memory_at_least`; paged, downloadable as CSV, and handed to the Run dialog as targets.

import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, LoadMore, PageTitle, PcLink, When } from "../components";
import { CsvDownload, InventoryNav, RunOnPcs } from "../inventory";
import { withQuery } from "../lib/api";
import { bytes } from "../lib/format";
import {
  type SummaryField,
  SUMMARY_FIELDS,
  describeHardwareFilter,
  filterForSummary,
  hardwareFilterOf,
  summaryValue,
} from "../lib/inventory";
import { keys } from "../lib/live";
import { everyPage, nextCursor, rowsOf } from "../lib/paging";

const PAGE_ROWS = 100;
/// Values shown per summary before the rest fold away.
const SHOWN_VALUES = 8;

export function InventoryHardwarePage() {
  const { api } = useAuth();
  const [params] = useSearchParams();
  const filter = hardwareFilterOf(params);
  const said = describeHardwareFilter(filter);
  const rows = useInfiniteQuery({
    queryKey: keys.inventoryList("hardware", filter),
    queryFn: ({ pageParam }) => api.inventoryHardware({ ...filter, cursor: pageParam, limit: PAGE_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
  });
  const shown = rowsOf(rows.data?.pages, (r) => r.pc_id);
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Inventory</PageTitle>
      <InventoryNav />
      <div className="summaries">
        {SUMMARY_FIELDS.map(([field, heading]) => (
          <Summary key={field} field={field} heading={heading} />
        ))}
      </div>
      <section aria-labelledby="hardware-list-title" className="panel">
        <div className="page-title">
          <h2 id="hardware-list-title">{said ? `PCs with ${said}` : "Every PC's hardware"}</h2>
          <div className="actions">
            <CsvDownload path="/api/inventory/hardware" query={{ ...filter }} list="hardware" filter={[said]} />
            <RunOnPcs
              from={said ? `PCs with ${said}` : "every PC with a hardware report"}
              load={() => everyPage((cursor) => api.inventoryHardware({ ...filter, cursor, limit: 1000 }))}
            />
          </div>
        </div>
        <p className="toolbar">
          <span className="muted" role="status">
            {rows.data ? `${shown.length}${rows.hasNextPage ? "+" : ""} PC${shown.length === 1 ? "" : "s"}` : ""}
          </span>
          {said ? <Link to="/inventory/hardware">Show every PC</Link> : null}
        </p>
        {rows.isPending ? <Loading what="hardware" /> : null}
        {rows.isError ? <ErrorNote error={rows.error} what="load the hardware" /> : null}
        {rows.data ? (
          <div className="table-wrap">
            <table>
              <caption className="visually-hidden">Hardware, by PC</caption>
              <thead>
                <tr>
                  <th scope="col">PC</th>
                  <th scope="col">Hostname</th>
                  <th scope="col">OS</th>
                  <th scope="col">Build</th>
                  <th scope="col">System</th>
                  <th scope="col">Serial</th>
                  <th scope="col">CPU</th>
                  <th scope="col">Memory</th>
                  <th scope="col">Collected</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((r) => (
                  <tr key={r.pc_id}>
                    <td>
                      <PcLink pc={r.pc_id} />
                    </td>
                    <td>{r.hostname}</td>
                    <td className="wrap">
                      {r.os_name} <span className="muted">{r.os_version}</span>
                    </td>
                    <td>{r.os_build}</td>
                    <td className="wrap">{[r.manufacturer, r.model].filter(Boolean).join(" ") || <span className="muted">—</span>}</td>
                    <td>{r.serial || <span className="muted">—</span>}</td>
                    <td className="wrap">
                      {r.cpu_model}
                      {r.cpu_cores || r.cpu_threads ? (
                        <span className="muted">
                          {" "}
                          ({r.cpu_cores} cores, {r.cpu_threads} threads)
                        </span>
                      ) : null}
                    </td>
                    <td className="nowrap">{bytes(r.memory_bytes)}</td>
                    <td>
                      <When at={r.collected_at} />
                    </td>
                  </tr>
                ))}
                {shown.length === 0 ? (
                  <tr>
                    <td colSpan={9} className="muted">
                      {said ? "No PC matches." : "No PC has reported its hardware yet."}
                    </td>
                  </tr>
                ) : null}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore pages={rows} what="PCs" />
      </section>
    </section>
  );
}

/// One field counted across the fleet, most common first; each value links to the PCs with it.
function Summary({ field, heading }: { field: SummaryField; heading: string }) {
  const { api } = useAuth();
  const counts = useQuery({
    queryKey: keys.inventoryList("summary", field),
    queryFn: () => api.hardwareSummary(field),
  });
  const id = `summary-${field}`;
  const line = (value: string, pcs: number) => {
    const filter = filterForSummary(field, value);
    const text = summaryValue(field, value);
    return (
      <li key={value}>
        {filter ? <Link to={withQuery("/inventory/hardware", { ...filter })}>{text}</Link> : <span className="muted">{text}</span>}{" "}
        <span className="muted">
          {pcs} PC{pcs === 1 ? "" : "s"}
        </span>
      </li>
    );
  };
  const data = counts.data ?? [];
  return (
    <section aria-labelledby={id} className="panel summary">
      <h2 id={id}>{heading}</h2>
      {counts.isPending ? <Loading what={heading.toLowerCase()} /> : null}
      {counts.isError ? <ErrorNote error={counts.error} what={`count ${heading.toLowerCase()}`} /> : null}
      {counts.data && data.length === 0 ? <p className="muted">Nothing reported yet.</p> : null}
      {data.length > 0 ? (
        <ul className="plain counts" aria-label={heading}>
          {data.slice(0, SHOWN_VALUES).map((c) => line(c.value, c.pcs))}
        </ul>
      ) : null}
      {data.length > SHOWN_VALUES ? (
        <details>
          <summary>{data.length - SHOWN_VALUES} more</summary>
          <ul className="plain counts">{data.slice(SHOWN_VALUES).map((c) => line(c.value, c.pcs))}</ul>
        </details>
      ) : null}
    </section>
  );
}
