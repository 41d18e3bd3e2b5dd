// Who is signed in, the API client that acts for them and what their role lets the dashboard offer. Every page
// reads these from here.

import { createContext, useContext } from "react";

import type { Api, Authority } from "./lib/api";
import type { Abilities } from "./lib/roles";
import type { Session } from "./lib/types";

export interface Auth {
  api: Api;
  /// The bearer token for requests made outside `api` (the event streams), renewed as it expires.
  authority: Authority;
  session: Session;
  may: Abilities;
  signOut: () => void;
}

export const AuthContext = createContext<Auth | null>(null);

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside <AuthContext>");
  return auth;
}
