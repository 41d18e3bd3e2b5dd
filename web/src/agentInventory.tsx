// An agent's inventory tabs: its hardware (with each kind's report time and what the agent could not collect), its
// software (searched on the page: the whole list is one answer), and its change log, newest first, a page at a time.
// Kept fresh by the `inventory` change notes (`keys.agentInventory(pc)` covers all three).

import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { type ReactNode, useState } from "react";
import { Link } from "react-router";

import { useAuth } from "./auth";
import { ErrorNote, Loading, LoadMore, When } from "./components";
import { CsvDownload } from "./inventory";
import { ApiError, withQuery } from "./lib/api";
import { bytes } from "./lib/format";
import { changeDetail, changeWords, searchSoftware, volumeLines } from "./lib/inventory";
import { keys } from "./lib/live";
import { nextCursor, rowsOf } from "./lib/paging";
import type { AgentInventory, InventoryReport } from "./lib/types";

/// The one request the hardware and software tabs share.
function useInventory(pc: string) {
  const { api } = useAuth();
  return useQuery({ queryKey: keys.agentInventory(pc), queryFn: () => api.agentInventory(pc) });
}

/// What the tabs say before the agent has reported (a 404 is not an error here), or while loading or failing.
function Pending({ query }: { query: ReturnType<typeof useInventory> }) {
  if (query.isPending) return <Loading what="the inventory" />;
  if (query.isError) {
    if (query.error instanceof ApiError && query.error.status === 404) {
      return (
        <p className="muted" data-testid="no-inventory">
          This agent has not reported an inventory yet: inventory may be off in its config (<code>inventory.enabled</code>),
          or its first report is on the way. “Refresh inventory” asks it to report now.
        </p>
      );
    }
    return <ErrorNote error={query.error} what="load the inventory" />;
  }
  return null;
}

const orDash = (value: string | number | null | undefined): ReactNode =>
  value === null || value === undefined || value === "" || value === 0 ? <span className="muted">—</span> : value;

export function HardwareTab({ pc }: { pc: string }) {
  const inventory = useInventory(pc);
  const data = inventory.data;
  if (!data) return <Pending query={inventory} />;
  const hw = data.hardware;
  const status = data.status;
  const volumes = volumeLines(hw?.volumes ?? [], status?.volumes ?? []);
  return (
    <>
      <Reports reports={data.reports ?? []} />
      {!hw ? <p className="muted">No hardware report yet.</p> : null}
      {hw ? (
        <div className="columns">
          <section className="panel" aria-labelledby="hw-system">
            <h2 id="hw-system">System</h2>
            <dl className="facts" data-testid="hardware-facts">
              <dt>OS</dt>
              <dd>
                {hw.os.name || "—"} {hw.os.version}
                {hw.os.edition ? <span className="muted"> {hw.os.edition}</span> : null}
              </dd>
              <dt>Build</dt>
              <dd>{orDash(hw.os.build)}</dd>
              <dt>Architecture</dt>
              <dd>{orDash(hw.os.arch)}</dd>
              <dt>Hostname</dt>
              <dd>{orDash(hw.hostname)}</dd>
              <dt>{hw.domain ? "Domain" : "Workgroup"}</dt>
              <dd>{orDash(hw.domain || hw.workgroup)}</dd>
              <dt>Manufacturer</dt>
              <dd>{orDash(hw.system.manufacturer)}</dd>
              <dt>Model</dt>
              <dd>{orDash(hw.system.model)}</dd>
              <dt>Serial</dt>
              <dd>{orDash(hw.system.serial)}</dd>
              <dt>UUID</dt>
              <dd>{orDash(hw.system.uuid)}</dd>
              <dt>BIOS</dt>
              <dd>
                {[hw.bios.vendor, hw.bios.version, hw.bios.date].filter(Boolean).join(", ") || "—"}
                {hw.bios.firmware ? <span className="muted"> ({hw.bios.firmware.toUpperCase()})</span> : null}
              </dd>
              <dt>Time zone</dt>
              <dd>{orDash(hw.timezone)}</dd>
              <dt>Booted</dt>
              <dd>
                <When at={status?.boot_time} />
              </dd>
            </dl>
          </section>
          <section className="panel" aria-labelledby="hw-cpu">
            <h2 id="hw-cpu">Processor and memory</h2>
            <dl className="facts">
              <dt>CPU</dt>
              <dd>{orDash(hw.cpu.model)}</dd>
              <dt>Vendor</dt>
              <dd>{orDash(hw.cpu.vendor)}</dd>
              <dt>Cores</dt>
              <dd>
                {hw.cpu.sockets || "?"} socket{hw.cpu.sockets === 1 ? "" : "s"}, {hw.cpu.cores || "?"} cores,{" "}
                {hw.cpu.threads || "?"} threads
              </dd>
              <dt>Top speed</dt>
              <dd>{hw.cpu.max_mhz ? `${hw.cpu.max_mhz} MHz` : "—"}</dd>
              <dt>Memory</dt>
              <dd data-testid="memory-total">{hw.memory.total_bytes ? bytes(hw.memory.total_bytes) : "—"}</dd>
            </dl>
            {hw.memory.modules.length > 0 ? (
              <Table caption="Memory modules" head={["Slot", "Size", "Speed", "Manufacturer", "Part number"]}>
                {hw.memory.modules.map((m, i) => (
                  <tr key={`${m.slot}:${i}`}>
                    <td>{orDash(m.slot)}</td>
                    <td className="nowrap">{bytes(m.size_bytes)}</td>
                    <td>{m.speed_mts ? `${m.speed_mts} MT/s` : "—"}</td>
                    <td>{orDash(m.manufacturer)}</td>
                    <td>{orDash(m.part_number)}</td>
                  </tr>
                ))}
              </Table>
            ) : (
              <p className="muted small">The platform does not list the memory modules.</p>
            )}
          </section>
        </div>
      ) : null}
      {hw ? (
        <>
          <Section title="Volumes" empty={volumes.length === 0}>
            <Table caption="Volumes" head={["Mount", "File system", "Label", "Size", "Free", "Used"]}>
              {volumes.map((v) => (
                <tr key={v.mount}>
                  <td>
                    <code>{v.mount}</code>
                  </td>
                  <td>{orDash(v.file_system)}</td>
                  <td>{orDash(v.label)}</td>
                  <td className="nowrap">{v.size_bytes ? bytes(v.size_bytes) : "—"}</td>
                  <td className="nowrap">{v.free_bytes === null ? "—" : bytes(v.free_bytes)}</td>
                  <td>
                    {v.used_pct === null ? (
                      "—"
                    ) : (
                      <span className="usage">
                        <meter min={0} max={100} low={80} high={90} optimum={0} value={v.used_pct} aria-label={`${v.mount} used`} />{" "}
                        {v.used_pct}%
                      </span>
                    )}
                  </td>
                </tr>
              ))}
            </Table>
          </Section>
          <Section title="Disks" empty={hw.disks.length === 0}>
            <Table caption="Disks" head={["Disk", "Model", "Serial", "Size", "Media", "Bus"]}>
              {hw.disks.map((d) => (
                <tr key={d.name}>
                  <td>
                    <code>{d.name}</code>
                  </td>
                  <td>{orDash(d.model)}</td>
                  <td>{orDash(d.serial)}</td>
                  <td className="nowrap">{bytes(d.size_bytes)}</td>
                  <td>{orDash(d.media)}</td>
                  <td>{orDash(d.bus)}</td>
                </tr>
              ))}
            </Table>
          </Section>
          <Section title="Network adapters" empty={hw.network.length === 0}>
            <Table caption="Network adapters" head={["Adapter", "MAC", "Addresses", "DHCP", "Gateways", "DNS servers"]}>
              {hw.network.map((n) => (
                <tr key={`${n.name}:${n.mac}`}>
                  <td>{n.name}</td>
                  <td>
                    <code>{orDash(n.mac)}</code>
                  </td>
                  <td className="wrap">{n.addresses.join(", ") || "—"}</td>
                  <td>{n.dhcp === null ? "unknown" : n.dhcp ? "yes" : "no"}</td>
                  <td className="wrap">{n.gateways.join(", ") || "—"}</td>
                  <td className="wrap">{n.dns_servers.join(", ") || "—"}</td>
                </tr>
              ))}
            </Table>
          </Section>
          <Section title="Graphics" empty={hw.gpus.length === 0}>
            <Table caption="Graphics adapters" head={["Name", "Vendor", "Driver", "Memory"]}>
              {hw.gpus.map((g, i) => (
                <tr key={`${g.name}:${i}`}>
                  <td className="wrap">{g.name}</td>
                  <td>{orDash(g.vendor)}</td>
                  <td>{orDash(g.driver_version)}</td>
                  <td>{g.memory_bytes ? bytes(g.memory_bytes) : "—"}</td>
                </tr>
              ))}
            </Table>
          </Section>
        </>
      ) : null}
      <Section title="Signed-in users" empty={(status?.users ?? []).length === 0} emptyText="Nobody is signed in.">
        <Table caption="Signed-in users" head={["User", "Session", "Since"]}>
          {(status?.users ?? []).map((u, i) => (
            <tr key={`${u.name}:${u.session}:${i}`}>
              <td>{u.name}</td>
              <td>{orDash(u.session)}</td>
              <td>
                <When at={u.since} />
              </td>
            </tr>
          ))}
        </Table>
      </Section>
    </>
  );
}

const KIND_WORDS: Record<string, string> = { hardware: "Hardware", software: "Software", status: "Status" };

/// When each kind was collected and received, and whatever the agent could not collect or had to leave out.
function Reports({ reports }: { reports: readonly InventoryReport[] }) {
  if (reports.length === 0) return null;
  return (
    <section className="panel" aria-labelledby="inv-reports">
      <h2 id="inv-reports">Reports</h2>
      <Table caption="Inventory reports" head={["Kind", "Collected", "Received", "Problems"]}>
        {reports.map((r) => {
          const errors = r.errors ?? [];
          const failed = r.failed_sources ?? [];
          const dropped = r.dropped ?? 0;
          const fine = errors.length === 0 && failed.length === 0 && dropped === 0;
          return (
            <tr key={r.kind}>
              <th scope="row">{KIND_WORDS[r.kind] ?? r.kind}</th>
              <td>
                <When at={r.collected_at} />
              </td>
              <td>
                <When at={r.received_at} />
              </td>
              <td className="wrap">
                {fine ? <span className="muted">none</span> : null}
                {errors.length > 0 ? (
                  <ul className="plain warn-list">
                    {errors.map((e, i) => (
                      <li key={i} className="warn">
                        <span aria-hidden="true">⚠ </span>
                        {e}
                      </li>
                    ))}
                  </ul>
                ) : null}
                {failed.length > 0 ? <p className="warn">Could not read {failed.join(", ")}: their items are as last reported.</p> : null}
                {dropped > 0 ? <p className="warn">{dropped} item{dropped === 1 ? "" : "s"} left out over the limits.</p> : null}
              </td>
            </tr>
          );
        })}
      </Table>
    </section>
  );
}

/// Rows shown at first, and added by each "Show more": a PC can have thousands of packages.
const SOFTWARE_STEP = 250;

export function SoftwareTab({ pc }: { pc: string }) {
  const inventory = useInventory(pc);
  const [search, setSearch] = useState("");
  const [limit, setLimit] = useState(SOFTWARE_STEP);
  const data: AgentInventory | undefined = inventory.data;
  if (!data) return <Pending query={inventory} />;
  const all = data.software ?? [];
  const matching = searchSoftware(all, search);
  const shown = matching.slice(0, limit);
  return (
    <section aria-labelledby="sw-title" className="panel">
      <div className="page-title">
        <h2 id="sw-title">Software</h2>
        <div className="actions">
          <CsvDownload path="/api/inventory/software" query={{ name: "*", pc_id: pc }} list="software" filter={[pc]} />
        </div>
      </div>
      <div className="toolbar">
        <label htmlFor="sw-search">Search</label>
        <input
          id="sw-search"
          type="search"
          value={search}
          placeholder="name, version, publisher, source…"
          onChange={(e) => {
            setSearch(e.target.value);
            setLimit(SOFTWARE_STEP);
          }}
          aria-describedby="sw-count"
        />
        <span id="sw-count" className="muted" role="status">
          {search.trim() ? `${matching.length} of ${all.length} items match` : `${all.length} items`}
        </span>
      </div>
      <Table caption={`Software on ${pc}`} head={["Name", "Version", "Source", "Publisher", "Arch", "Scope", "Installed", "Since"]}>
        {shown.map((s) => (
          <tr key={`${s.source}\u0000${s.id}`}>
            <td className="wrap">
              <Link to={withQuery("/inventory/software", { name: s.name })} title={`Every PC with ${s.name}`}>
                {s.name}
              </Link>
            </td>
            <td>
              <code>{s.version}</code>
            </td>
            <td>{s.source}</td>
            <td className="wrap">{orDash(s.publisher)}</td>
            <td>{orDash(s.arch)}</td>
            <td>{orDash(s.scope)}</td>
            <td>{orDash(s.install_date)}</td>
            <td>
              <When at={s.since} />
            </td>
          </tr>
        ))}
        {matching.length === 0 ? (
          <tr>
            <td colSpan={8} className="muted">
              {all.length === 0 ? "No software reported." : "Nothing matches the search."}
            </td>
          </tr>
        ) : null}
      </Table>
      {matching.length > shown.length ? (
        <p>
          <button type="button" onClick={() => setLimit((n) => n + SOFTWARE_STEP * 4)}>
            Show more ({matching.length - shown.length} not shown)
          </button>
        </p>
      ) : null}
    </section>
  );
}

const HISTORY_PAGE = 50;

export function HistoryTab({ pc }: { pc: string }) {
  const { api } = useAuth();
  const [kind, setKind] = useState("");
  const changes = useInfiniteQuery({
    queryKey: keys.agentChanges(pc, kind),
    queryFn: ({ pageParam }) => api.inventoryChanges({ pc_id: pc, kind: kind || undefined, cursor: pageParam, limit: HISTORY_PAGE }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
  });
  const shown = rowsOf(changes.data?.pages, (c) => `${c.at}\u0000${c.kind}\u0000${c.change}\u0000${c.source}\u0000${c.item_id}\u0000${c.name}`);
  return (
    <section aria-labelledby="history-title" className="panel">
      <div className="page-title">
        <h2 id="history-title">Changes</h2>
        <div className="actions">
          <CsvDownload path="/api/inventory/changes" query={{ pc_id: pc, kind }} list="changes" filter={[pc, kind]} />
        </div>
      </div>
      <div className="toolbar">
        <label htmlFor="history-kind">Kind</label>
        <select id="history-kind" value={kind} onChange={(e) => setKind(e.target.value)}>
          <option value="">software and hardware</option>
          <option value="software">software</option>
          <option value="hardware">hardware</option>
        </select>
      </div>
      {changes.isPending ? <Loading what="the changes" /> : null}
      {changes.isError ? <ErrorNote error={changes.error} what="load the changes" /> : null}
      {changes.data ? (
        <Table caption={`Inventory changes on ${pc}, newest first`} head={["When", "Kind", "Change", "Item", "Detail"]}>
          {shown.map((c, i) => (
            <tr key={`${c.at}:${c.kind}:${c.source}:${c.item_id}:${c.name}:${i}`}>
              <td>
                <When at={c.at} />
              </td>
              <td>{c.kind}</td>
              <td>{changeWords(c.change)}</td>
              <td className="wrap">{c.name}</td>
              <td className="wrap">
                <code>{changeDetail(c)}</code>
              </td>
            </tr>
          ))}
          {shown.length === 0 ? (
            <tr>
              <td colSpan={5} className="muted">
                No changes recorded yet.
              </td>
            </tr>
          ) : null}
        </Table>
      ) : null}
      <LoadMore pages={changes} what="changes" />
    </section>
  );
}

function Section({ title, empty, emptyText, children }: { title: string; empty: boolean; emptyText?: string; children: ReactNode }) {
  const id = `hw-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return (
    <section className="panel section-gap" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {empty ? <p className="muted">{emptyText ?? "None reported."}</p> : children}
    </section>
  );
}

function Table({ caption, head, children }: { caption: string; head: readonly string[]; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table>
        <caption className="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            {head.map((h) => (
              <th key={h} scope="col">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
