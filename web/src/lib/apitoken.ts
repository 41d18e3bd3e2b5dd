// Signing in with an API token instead of a name and password (automation's tokens, `[[auth.operators]]` tokens,
// the static bootstrap token): the token and the operator's name, kept in this tab's sessionStorage (gone when the
// tab closes) or, when the operator asks to be remembered, in localStorage too. A password sign-in keeps nothing
// here: its session token lives in memory (`session.ts`) and its refresh token in an HttpOnly cookie.

import type { Credentials } from "./api";

const KEY = "kanade.credentials";

function parse(raw: string | null): Credentials | null {
  if (!raw) return null;
  try {
    const value = JSON.parse(raw) as Partial<Credentials>;
    if (typeof value.token !== "string" || typeof value.operator !== "string") return null;
    return { token: value.token, operator: value.operator };
  } catch {
    return null;
  }
}

export function load(): Credentials | null {
  try {
    return parse(sessionStorage.getItem(KEY)) ?? parse(localStorage.getItem(KEY));
  } catch {
    return null;
  }
}

export function save(credentials: Credentials, remember: boolean): void {
  const text = JSON.stringify(credentials);
  try {
    sessionStorage.setItem(KEY, text);
    if (remember) localStorage.setItem(KEY, text);
    else localStorage.removeItem(KEY);
  } catch {
    // Storage disabled: the session lasts until the page reloads.
  }
}

export function clear(): void {
  try {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
  } catch {
    // Nothing stored.
  }
}

/// The name the backend will record for `raw`, as `Actor::from_login` makes it (lowercase; anything but a-z, 0-9,
/// `_` and `-` becomes `-`; at most 64 characters), or why it cannot be sent: a header carries ASCII only.
export function operatorName(raw: string): { name: string } | { error: string } {
  const trimmed = raw.trim();
  if (!trimmed) return { name: "" };
  // eslint-disable-next-line no-control-regex
  if (!/^[\x20-\x7e]+$/.test(trimmed)) return { error: "use plain ASCII letters, digits, `.`, `-` or `_` in your name" };
  const name = trimmed
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, "-")
    .slice(0, 64)
    .replace(/^-+|-+$/g, "");
  return name ? { name } : { error: "your name needs at least one letter or digit" };
}
