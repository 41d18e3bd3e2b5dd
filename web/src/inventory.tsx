// Pieces the inventory pages and an agent's inventory tabs share: the sub-navigation, a list's CSV download (fetched
// with the token in a header, offered as a file), the hand-off of a query's PCs to the Run dialog, and the version
// range box. What each decides is in `lib/inventory.ts`.

import { useState } from "react";
import { NavLink, useNavigate } from "react-router";

import { useAuth } from "./auth";
import { ErrorNote } from "./components";
import { csvName, csvPath, distinctPcs } from "./lib/inventory";

/// The inventory section's own navigation, under its heading.
export function InventoryNav() {
  const links = [
    ["/inventory", "Software"],
    ["/inventory/hardware", "Hardware"],
    ["/inventory/facts", "Job facts"],
  ] as const;
  return (
    <nav aria-label="Inventory" className="subnav">
      <ul>
        {links.map(([to, label]) => (
          <li key={to}>
            <NavLink to={to} end={to === "/inventory"}>
              {label}
            </NavLink>
          </li>
        ))}
      </ul>
    </nav>
  );
}

/// "Download CSV": the list's whole query as `format=csv`, fetched with the bearer token (a plain link would not
/// carry it) and saved under a name that says what it holds.
export function CsvDownload(props: {
  path: string;
  query: Record<string, string | number | undefined | null>;
  list: string;
  filter?: readonly (string | undefined)[];
  label?: string;
}) {
  const { api } = useAuth();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const download = async () => {
    setBusy(true);
    setError(null);
    try {
      const { body } = await api.raw(csvPath(props.path, props.query), null, "blob");
      const url = URL.createObjectURL(body);
      const link = document.createElement("a");
      link.href = url;
      link.download = csvName(props.list, props.filter);
      link.click();
      // The browser has taken the file once the click is handled; the URL only needs to outlive that.
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" onClick={download} disabled={busy}>
        {busy ? "Preparing CSV…" : (props.label ?? "Download CSV")}
      </button>
      {error ? <ErrorNote error={error} what="download the CSV" /> : null}
    </>
  );
}

/// "Run a job on these PCs…": reads every PC of the query (`load`), and opens the Jobs page with them handed to the
/// Run dialog, which opens on them.
export function RunOnPcs({ load, from }: { load: () => Promise<readonly { pc_id: string }[]>; from: string }) {
  const { may } = useAuth();
  const navigate = useNavigate();
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const go = async () => {
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      const { pcs, more } = distinctPcs(await load());
      if (pcs.length === 0) {
        setNote("No PC matches, so there is nobody to run a job on.");
        return;
      }
      const said = more > 0 ? `${from} (the first ${pcs.length}; ${more} more left out: target a group for all)` : from;
      void navigate("/jobs", { state: { handoff: { pcs, from: said } } });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  // Running jobs is an operator's: a viewer is not offered the way there.
  if (!may.operate) return null;
  return (
    <>
      <button type="button" onClick={go} disabled={busy}>
        {busy ? "Reading the PCs…" : "Run a job on these PCs…"}
      </button>
      {note ? (
        <span role="status" className="small muted">
          {note}
        </span>
      ) : null}
      {error ? <ErrorNote error={error} what="read the PCs" /> : null}
    </>
  );
}

/// The version range box, with what is wrong with it (the same check the server makes) under it.
export function RangeField(props: { id: string; value: string; error?: string; onChange: (value: string) => void; help?: string }) {
  const described = [`${props.id}-help`, props.error ? `${props.id}-error` : ""].filter(Boolean).join(" ");
  return (
    <div className="range-field">
      <label htmlFor={props.id}>Version range</label>
      <input
        id={props.id}
        value={props.value}
        placeholder="e.g. <2.0 or >=1.4.2,<1.5"
        spellCheck={false}
        autoComplete="off"
        aria-invalid={props.error ? true : undefined}
        aria-describedby={described}
        onChange={(e) => props.onChange(e.target.value)}
      />
      <span id={`${props.id}-help`} className="help">
        {props.help ?? "Comma-separated clauses, each of <, <=, >, >=, =, != and a version; all must hold."}
      </span>
      {props.error ? (
        <p id={`${props.id}-error`} className="error" role="alert">
          {props.error}
        </p>
      ) : null}
    </div>
  );
}
