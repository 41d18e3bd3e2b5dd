// How an agent's timeline reads: each kind in words, what its details say in one line, whether it is bad news, and
// the pages of `GET /api/agents/{pc}/events` as one list. Pure, so the wording is unit-tested; a kind a newer agent
// sends (the set is open) reads as its own name.

import { detailsText } from "./audit";
import { bytes } from "./format";
import type { AgentEvent, AgentEventPage } from "./types";

const WORDS: Record<string, string> = {
  agent_started: "Agent started",
  agent_update: "Updated",
  agent_update_refused: "Update refused",
  agent_update_rolled_back: "Update rolled back",
  outbox_full: "Outbox full",
  outbox_recovered: "Outbox drained",
};

/// The kind in words: the known ones named, any other as its own name with spaces.
export function kindWords(kind: string): string {
  const known = WORDS[kind];
  if (known) return known;
  const spaced = kind.replace(/_+/g, " ").trim();
  return spaced ? spaced.charAt(0).toUpperCase() + spaced.slice(1) : "Unnamed event";
}

/// Entries an operator should look at twice.
export function isBadNews(kind: string): boolean {
  return kind === "agent_update_refused" || kind === "agent_update_rolled_back" || kind === "outbox_full";
}

function text(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : typeof value === "number" ? String(value) : null;
}

function count(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : null;
}

/// What the entry's details say, in one line; details that do not have the expected shape read as `key: value`.
export function summary(entry: Pick<AgentEvent, "kind" | "details">): string {
  const d = (entry.details && typeof entry.details === "object" ? entry.details : {}) as Record<string, unknown>;
  switch (entry.kind) {
    case "agent_started": {
      const version = text(d.version);
      if (!version) break;
      const from = text(d.from);
      return d.after_update === true ? `version ${version}, after an update from ${from ?? "an older version"}` : `version ${version}`;
    }
    case "agent_update": {
      const [from, to] = [text(d.from), text(d.to)];
      if (from && to) return `${from} → ${to}`;
      break;
    }
    case "agent_update_refused": {
      const to = text(d.to) ?? text(d.expected);
      const why = text(d.error) ?? (text(d.running) ? `it runs as ${text(d.running)}` : null);
      if (to) return why ? `${to}: ${why}` : to;
      break;
    }
    case "agent_update_rolled_back": {
      const [from, to] = [text(d.from), text(d.to)];
      if (from && to) return `${from} never came up healthy; back on ${to}`;
      break;
    }
    case "outbox_full":
    case "outbox_recovered": {
      const [pending, held] = [count(d.pending), count(d.bytes)];
      if (pending !== null && held !== null) return `${pending} result(s) waiting, ${bytes(held)}`;
      break;
    }
  }
  return detailsText(entry.details, 200);
}

/// Every page's entries in order, each once (a live refetch can move an entry across a page boundary).
export function entries(pages: readonly AgentEventPage[]): AgentEvent[] {
  const seen = new Set<string>();
  const out: AgentEvent[] = [];
  for (const page of pages) {
    for (const entry of page.items) {
      if (seen.has(entry.event_id)) continue;
      seen.add(entry.event_id);
      out.push(entry);
    }
  }
  return out;
}
