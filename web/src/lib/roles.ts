// What the signed-in caller's role lets the dashboard offer. The backend enforces every route's role on its own
// (403 `forbidden`); this only keeps buttons a role cannot use off the page, as the route table in
// `crates/kanade-backend/src/api/mod.rs` declares them.

import type { Role, Session } from "./types";

const RANK: Record<Role, number> = { viewer: 0, operator: 1, approver: 2, admin: 3 };

/// Whether `role` includes `needed`. No role at all is a backend from before accounts, where everyone is admin.
export function allows(role: Role | null | undefined, needed: Role): boolean {
  return RANK[role ?? "admin"] >= RANK[needed];
}

/// The actions the dashboard offers, each with the role its route needs.
export interface Abilities {
  /// Run and kill jobs, revoke and allow them again, manage schedules, ask for inventory (operator).
  operate: boolean;
  /// Approve and reject others' executions (approver).
  approve: boolean;
  /// Enrolment (approvals, tokens, credentials) and forgetting agents (admin).
  administer: boolean;
}

export function abilities(session: Pick<Session, "role">): Abilities {
  return {
    operate: allows(session.role, "operator"),
    approve: allows(session.role, "approver"),
    administer: allows(session.role, "admin"),
  };
}

/// The header's "who": the account (or claimed name) and its role.
export function whoText(session: Pick<Session, "actor" | "user" | "role">): { name: string; role: string } {
  return { name: session.user ?? session.actor, role: session.role ?? "admin" };
}
