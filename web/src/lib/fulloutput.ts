// A result's whole output stream (`GET /api/results/{id}/output`), when it outgrew what the result carries inline:
// whether to offer it, how to label it, and how much of it to put on the page. The page shows at most
// `SHOW_LIMIT` bytes (asked for with a `Range`, so a 64 MiB output never lands in the tab unless downloaded); the
// download fetches the whole with the bearer token in a header, never in a URL.

import { bytes } from "./format";
import type { ResultRow } from "./types";

/// The most of a whole output shown on the page.
export const SHOW_LIMIT = 1024 * 1024;

export type OutputStreamName = "stdout" | "stderr";

/// What the page offers for one stream of a result.
export type Offer =
  /// Nothing beyond the inline text (it is the whole stream, or the rest was not kept).
  | { kind: "none"; note: string | null }
  /// The whole stream can be fetched.
  | { kind: "full"; label: string; size: number; capped: boolean; note: string | null }
  /// The whole stream was kept by the agent but cannot be served.
  | { kind: "unavailable"; note: string };

export function offer(result: ResultRow, stream: OutputStreamName): Offer {
  const full = stream === "stdout" ? result.stdout_full : result.stderr_full;
  const truncated = stream === "stdout" ? result.stdout_truncated : result.stderr_truncated;
  if (!full) {
    return { kind: "none", note: truncated ? `${stream} was cut at the agent's output limit.` : null };
  }
  if (full.unavailable) {
    return { kind: "unavailable", note: `Only the first part of ${stream} is kept: ${full.unavailable}` };
  }
  const capped = full.capped;
  return {
    kind: "full",
    label: `Full output (${bytes(full.size)})`,
    size: full.size,
    capped,
    note: capped ? `${stream} went on past the agent's ceiling (output_max_bytes); only its first ${bytes(full.size)} are kept.` : null,
  };
}

/// The `Range` header that asks for what the page shows of `size` bytes; `null` when it shows them all.
export function showRange(size: number): string | null {
  return size > SHOW_LIMIT ? `bytes=0-${SHOW_LIMIT - 1}` : null;
}

/// The API path of one stream's whole output.
export function outputPath(resultId: string, stream: OutputStreamName): string {
  return `/api/results/${encodeURIComponent(resultId)}/output?stream=${stream}`;
}

/// A file name for the download: `<result id>.<stream>.txt`, with nothing a file system would refuse.
export function downloadName(resultId: string, stream: OutputStreamName): string {
  return `${resultId.replace(/[^a-z0-9_.-]/g, "_")}.${stream}.txt`;
}
