// Who is signed in, and the API client that acts for them. Every page reads both from here.

import { createContext, useContext } from "react";

import type { Api, Credentials } from "./lib/api";
import type { Session } from "./lib/types";

export interface Auth {
  api: Api;
  credentials: Credentials | null;
  session: Session;
  signOut: () => void;
}

export const AuthContext = createContext<Auth | null>(null);

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside <AuthContext>");
  return auth;
}
