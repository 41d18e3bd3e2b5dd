import { describe, expect, it } from "vitest";
import { SHOW_LIMIT, downloadName, offer, outputPath, showRange } from "./fulloutput";
import type { ResultRow } from "./types";

const row = (over: Partial<ResultRow> = {}): ResultRow => ({
  result_id: "e.pc-1",
  exec_id: "e",
  job_id: "j",
  version: "",
  pc_id: "pc-1",
  status: "ok",
  exit_code: 0,
  stdout: "x",
  stderr: "",
  stdout_truncated: false,
  stderr_truncated: false,
  started_at: null,
  finished_at: "2026-12-01T12:00:00Z",
  reason: null,
  recorded_at: "2026-12-01T12:00:00Z",
  stdout_full: null,
  stderr_full: null,
  ...over,
});

const full = { size: 3 * 1024 * 1024, sha256: "ab".repeat(32), capped: false, unavailable: null };

describe("offer", () => {
  it("offers nothing for a short stream, and says when the rest was not kept", () => {
    expect(offer(row(), "stdout")).toEqual({ kind: "none", note: null });
    expect(offer(row({ stderr_truncated: true }), "stderr")).toEqual({
      kind: "none",
      note: "stderr was cut at the agent's output limit.",
    });
  });

  it("offers the whole stream with its size", () => {
    const o = offer(row({ stdout_truncated: true, stdout_full: full }), "stdout");
    expect(o).toEqual({ kind: "full", label: "Full output (3.0 MiB)", size: full.size, capped: false, note: null });
  });

  it("says when the agent's ceiling cut the stream", () => {
    const o = offer(row({ stderr_full: { ...full, capped: true } }), "stderr");
    expect(o.kind).toBe("full");
    expect(o.note).toContain("ceiling");
  });

  it("says why a whole stream cannot be served", () => {
    const o = offer(row({ stdout_full: { ...full, unavailable: "the agent's outbox was full" } }), "stdout");
    expect(o).toEqual({ kind: "unavailable", note: "Only the first part of stdout is kept: the agent's outbox was full" });
  });

  it("reads a row from an older backend that has no such fields", () => {
    const older = row();
    delete (older as Partial<ResultRow>).stdout_full;
    expect(offer(older, "stdout").kind).toBe("none");
  });
});

describe("ranges, paths and names", () => {
  it("asks for the first part only when the stream is larger than the page shows", () => {
    expect(showRange(SHOW_LIMIT)).toBeNull();
    expect(showRange(SHOW_LIMIT + 1)).toBe(`bytes=0-${SHOW_LIMIT - 1}`);
  });

  it("escapes the result id in the path and the file name", () => {
    expect(outputPath("a/b?c", "stderr")).toBe("/api/results/a%2Fb%3Fc/output?stream=stderr");
    expect(downloadName("0190.pc-1", "stdout")).toBe("0190.pc-1.stdout.txt");
    expect(downloadName("../x\"y", "stdout")).toBe(".._x_y.stdout.txt");
  });
});
