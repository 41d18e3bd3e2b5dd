// Where the browser keeps who is signed in: the token and operator name, in this tab's sessionStorage by
// default (gone when the tab closes) or localStorage when the operator asks to be remembered.

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
