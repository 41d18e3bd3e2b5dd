// A job's facts: for a job whose manifest has an `inventory:` block, the fields its script printed on each PC (its
// `display` columns, a line per PC or per row of an array), a warning on each PC whose last run printed no facts,
// and its `summary` fields counted across the fleet; paged by PC, downloadable as CSV.

import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { useNavigate, useParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, LoadMore, PageTitle, PcLink, When } from "../components";
import { CsvDownload, InventoryNav, RunOnPcs } from "../inventory";
import { factJobs, factTable, factWarning } from "../lib/inventory";
import { keys } from "../lib/live";
import { everyPage, rowsOf } from "../lib/paging";

const PAGE_PCS = 100;

export function InventoryFactsPage() {
  const { job = "" } = useParams();
  const { api } = useAuth();
  const navigate = useNavigate();
  const jobs = useQuery({ queryKey: keys.jobs, queryFn: api.jobs });
  const choices = factJobs(jobs.data ?? []);
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Inventory</PageTitle>
      <InventoryNav />
      {jobs.isPending ? <Loading what="jobs" /> : null}
      {jobs.isError ? <ErrorNote error={jobs.error} what="load the jobs" /> : null}
      {jobs.data && choices.length === 0 ? (
        <p className="muted">
          No job keeps facts yet. A job whose manifest has an <code>inventory:</code> block (its script prints JSON) has
          its output kept per PC and shown here.
        </p>
      ) : null}
      {choices.length > 0 ? (
        <div className="toolbar">
          <label htmlFor="facts-job">Job</label>
          <select
            id="facts-job"
            value={job}
            onChange={(e) => void navigate(e.target.value ? `/inventory/facts/${encodeURIComponent(e.target.value)}` : "/inventory/facts")}
          >
            <option value="">Choose a job…</option>
            {choices.map((j) => (
              <option key={j.job.id} value={j.job.id}>
                {j.job.id}
                {j.job.description ? ` — ${j.job.description}` : ""}
              </option>
            ))}
          </select>
        </div>
      ) : null}
      {job ? <Facts job={job} /> : null}
    </section>
  );
}

function Facts({ job }: { job: string }) {
  const { api } = useAuth();
  const facts = useInfiniteQuery({
    queryKey: keys.inventoryList("facts", { app: job }),
    queryFn: ({ pageParam }) => api.jobFacts(job, { cursor: pageParam, limit: PAGE_PCS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next ?? undefined,
  });
  const first = facts.data?.pages[0];
  const items = rowsOf(facts.data?.pages, (item) => item.pc_id);
  const { columns, lines } = factTable({ display: first?.display ?? [], items });
  const warned = lines.some((l) => l.error);
  return (
    <>
      {facts.isPending ? <Loading what={`the facts of ${job}`} /> : null}
      {facts.isError ? <ErrorNote error={facts.error} what={`load the facts of ${job}`} /> : null}
      {first ? (
        <>
          {first.summary.length > 0 ? (
            <div className="summaries">
              {first.summary.map((s) => (
                <section key={s.field} className="panel summary" aria-labelledby={`fact-summary-${s.field}`}>
                  <h2 id={`fact-summary-${s.field}`}>{s.label}</h2>
                  {s.counts.length === 0 ? <p className="muted">No PC has reported it.</p> : null}
                  <ul className="plain counts" aria-label={s.label}>
                    {s.counts.map((c) => (
                      <li key={c.value}>
                        <code>{c.value || "(empty)"}</code>{" "}
                        <span className="muted">
                          {c.pcs} PC{c.pcs === 1 ? "" : "s"}
                        </span>
                      </li>
                    ))}
                  </ul>
                </section>
              ))}
            </div>
          ) : null}
          <section className="panel" aria-labelledby="facts-title">
            <div className="page-title">
              <h2 id="facts-title">Facts of {job}</h2>
              <div className="actions">
                <CsvDownload path="/api/inventory" query={{ app: job }} list={`${job}-facts`} />
                <RunOnPcs
                  from={`PCs with facts of ${job}`}
                  load={() => everyPage(async (cursor) => {
                    const page = await api.jobFacts(job, { cursor, limit: 1000 });
                    return { items: page.items, next: page.next };
                  })}
                />
              </div>
            </div>
            <p className="muted small" role="status">
              {items.length}
              {facts.hasNextPage ? "+" : ""} PC{items.length === 1 ? "" : "s"}
              {warned ? `; ${lines.filter((l) => l.error).length} with a problem` : ""}
            </p>
            <div className="table-wrap">
              <table>
                <caption className="visually-hidden">Facts of {job}, by PC</caption>
                <thead>
                  <tr>
                    <th scope="col">PC</th>
                    {columns.map((c) => (
                      <th key={c.field} scope="col">
                        {c.label}
                      </th>
                    ))}
                    <th scope="col">Reported</th>
                    {warned ? <th scope="col">Problem</th> : null}
                  </tr>
                </thead>
                <tbody>
                  {lines.map((line) => {
                    const warning = factWarning(line);
                    return (
                      <tr key={line.key} className={warning ? "warn-row" : undefined}>
                        <td>{line.first ? <PcLink pc={line.pc_id} /> : <span className="visually-hidden">{line.pc_id}</span>}</td>
                        {line.cells.map((cell, i) => (
                          <td key={columns[i]?.field ?? i} className="wrap">
                            {cell === null ? <span className="muted">—</span> : cell}
                          </td>
                        ))}
                        <td>{line.first ? <When at={line.at} /> : null}</td>
                        {warned ? (
                          <td className="wrap">
                            {warning && line.first ? (
                              <span className="warn" role="note">
                                <span aria-hidden="true">⚠ </span>
                                {warning}
                              </span>
                            ) : null}
                          </td>
                        ) : null}
                      </tr>
                    );
                  })}
                  {lines.length === 0 ? (
                    <tr>
                      <td colSpan={columns.length + 2 + (warned ? 1 : 0)} className="muted">
                        No PC has run {job} successfully yet.
                      </td>
                    </tr>
                  ) : null}
                </tbody>
              </table>
            </div>
            <LoadMore pages={facts} what="PCs" />
          </section>
        </>
      ) : null}
    </>
  );
}
