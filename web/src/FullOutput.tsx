// One stream's whole output under the inline text of a stored result: a "Full output (N MiB)" action that fetches it
// with the bearer token (in a header), shows its first `SHOW_LIMIT` bytes, and offers the whole as a download; the
// ceiling and "unavailable" flags are shown as the lib decides.

import { useState } from "react";

import { useAuth } from "./auth";
import { ErrorNote } from "./components";
import { bytes } from "./lib/format";
import { SHOW_LIMIT, downloadName, offer, outputPath, showRange, type OutputStreamName } from "./lib/fulloutput";
import type { ResultRow } from "./lib/types";

export function FullOutput({ result, stream }: { result: ResultRow; stream: OutputStreamName }) {
  const { api } = useAuth();
  const what = offer(result, stream);
  const [shown, setShown] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  if (what.kind === "none") return what.note ? <p className="warn">{what.note}</p> : null;
  if (what.kind === "unavailable") return <p className="warn" data-testid={`${stream}-unavailable`}>{what.note}</p>;

  const path = outputPath(result.result_id, stream);
  const load = async () => {
    setBusy(true);
    setError(null);
    try {
      setShown((await api.raw(path, showRange(what.size), "text")).body);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const download = async () => {
    setBusy(true);
    setError(null);
    try {
      const { body } = await api.raw(path, null, "blob");
      const url = URL.createObjectURL(body);
      const link = document.createElement("a");
      link.href = url;
      link.download = downloadName(result.result_id, stream);
      link.click();
      URL.revokeObjectURL(url);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="full-output">
      {what.note ? <p className="warn" data-testid={`${stream}-capped`}>{what.note}</p> : null}
      <p>
        <button type="button" onClick={load} disabled={busy} data-testid={`${stream}-full`}>
          {what.label}
        </button>{" "}
        <button type="button" onClick={download} disabled={busy}>
          Download {stream}
        </button>
      </p>
      {error ? <ErrorNote error={error} what={`load the whole ${stream}`} /> : null}
      {shown !== null ? (
        <>
          {what.size > SHOW_LIMIT ? (
            <p className="muted">
              The first {bytes(SHOW_LIMIT)} of {bytes(what.size)}; download for all of it.
            </p>
          ) : null}
          <pre className="code output" tabIndex={0} aria-label={`Whole ${stream}`} data-testid={`${stream}-whole`}>
            {shown}
          </pre>
        </>
      ) : null}
    </div>
  );
}
