// How times, durations and sizes read on the page: short, plain, and the same everywhere.

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago"; "in 4 min" for the future; "—" for nothing.
export function ago(at: string | null | undefined, now: number = Date.now()): string {
  if (!at) return "—";
  const then = Date.parse(at);
  if (Number.isNaN(then)) return "—";
  const seconds = Math.round((now - then) / 1000);
  const text = span(Math.abs(seconds));
  if (Math.abs(seconds) < 2) return "just now";
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

/// A duration in seconds as its largest unit: "45 s", "12 min", "3 h", "2 d".
export function span(seconds: number): string {
  if (!Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}

/// How long a run took, from two RFC 3339 times: "850 ms", "4.2 s", "3 min".
export function took(started: string | null | undefined, finished: string | null | undefined): string {
  if (!started || !finished) return "—";
  const ms = Date.parse(finished) - Date.parse(started);
  if (Number.isNaN(ms) || ms < 0) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return span(ms / 1000);
}

/// Milliseconds as an operator would write them in a manifest: "90s" reads "1 min 30 s".
export function millis(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${ms} ms`;
  const parts: string[] = [];
  let s = Math.round(ms / 1000);
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["min", 60], ["s", 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)} ${unit}`);
      s %= size;
    }
  }
  return parts.join(" ");
}

/// Bytes in binary units: "512 B", "1.5 KiB", "64.0 MiB".
export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${Math.max(0, Math.round(n || 0))} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/// A local date and time for a tooltip or an audit row: "2026-11-23 14:05:09".
export function stamp(at: string | null | undefined): string {
  if (!at) return "—";
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return "—";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
