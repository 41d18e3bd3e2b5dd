// Reading the API's JSON defensively, and the status badges pages show: shared by the pages' pure helpers.

/// The badge tones the stylesheet has (`badge-ok`, ...), each with a symbol, so a state never reads by colour alone.
export type Tone = "ok" | "failed" | "running" | "pending" | "skipped";

export interface Badge {
  label: string;
  tone: Tone;
  symbol: string;
}

const SYMBOL: Record<Tone, string> = { ok: "✓", failed: "✗", running: "▶", pending: "…", skipped: "⤼" };

export const badge = (label: string, tone: Tone): Badge => ({ label, tone, symbol: SYMBOL[tone] });

/// A value as text when it is a non-empty string; else null.
export function text(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/// A value as a finite number; else null.
export function number(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/// An object's fields, or none for anything that is not an object.
export function fields(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/// The strings of a list; nothing for what is not a list.
export function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string" && v !== "") : [];
}
