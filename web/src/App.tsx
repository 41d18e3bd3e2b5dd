// The dashboard's shell: the session (signed in, or the sign-in page), the live change stream, navigation and the
// routes.

import { MutationCache, QueryCache, QueryClient, QueryClientProvider, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { BrowserRouter, NavLink, Route, Routes, useLocation } from "react-router";

import { type Auth, AuthContext, useAuth } from "./auth";
import { Api, ApiError } from "./lib/api";
import * as apitoken from "./lib/apitoken";
import { keys, parseChange, stale } from "./lib/live";
import { abilities, whoText } from "./lib/roles";
import { type SessionStatus, SessionKeeper, browserExclusive, httpTransport } from "./lib/session";
import { type StreamState, follow } from "./lib/sse";
import logo from "./favicon.svg";
import { SignInPage } from "./SignIn";
import { ActivityPage } from "./pages/Activity";
import { AgentPage } from "./pages/Agent";
import { AgentsPage } from "./pages/Agents";
import { AuditPage } from "./pages/Audit";
import { EnrollmentPage } from "./pages/Enrollment";
import { ExecutionPage } from "./pages/Execution";
import { FleetPage } from "./pages/Fleet";
import { InventoryPage } from "./pages/Inventory";
import { InventoryFactsPage } from "./pages/InventoryFacts";
import { InventoryHardwarePage } from "./pages/InventoryHardware";
import { InventorySoftwarePage } from "./pages/InventorySoftware";
import { JobsPage } from "./pages/Jobs";
import { SchedulePage, SchedulesPage } from "./pages/Schedules";

export function App() {
  const keeper = useMemo(
    () => new SessionKeeper({ transport: httpTransport(), store: apitoken, now: Date.now, exclusive: browserExclusive() }),
    [],
  );
  const client = useMemo(() => {
    // A request refused even after the keeper renewed its token (signed out elsewhere, revoked, a user disabled,
    // the backend's config changed) ends the sign-in here too.
    const onError = (error: unknown) => {
      if (error instanceof ApiError && error.unauthorized) keeper.ended();
    };
    return new QueryClient({
      queryCache: new QueryCache({ onError }),
      mutationCache: new MutationCache({ onError }),
      defaultOptions: {
        // The browser's idea of "online" says nothing about reaching a backend on this host or the LAN (headless
        // or air-gapped machines report offline); the request itself tells.
        mutations: { networkMode: "always" },
        queries: {
          networkMode: "always",
          retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
          staleTime: 2_000,
        },
      },
    });
  }, [keeper]);
  const status = useSyncExternalStore(keeper.subscribe, keeper.status);
  useEffect(() => {
    void keeper.resume();
  }, [keeper]);
  useEffect(() => {
    // Nothing one operator saw is kept for whoever signs in next.
    if (status.state === "signed-out") client.clear();
  }, [status, client]);
  return (
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <Gate keeper={keeper} status={status} />
      </BrowserRouter>
    </QueryClientProvider>
  );
}

function Gate({ keeper, status }: { keeper: SessionKeeper; status: SessionStatus }) {
  switch (status.state) {
    case "starting":
      return <Connecting />;
    case "unreachable":
      return <Unreachable message={status.message} retry={() => void keeper.resume()} />;
    case "signed-out":
      return <SignInPage keeper={keeper} notice={status.notice} />;
    case "signed-in":
      return <SignedIn keeper={keeper} epoch={status.epoch} />;
  }
}

function Connecting() {
  return (
    <main className="centered">
      <p role="status">Connecting to the backend…</p>
    </main>
  );
}

function Unreachable({ message, retry }: { message: string; retry: () => void }) {
  return (
    <main className="centered">
      <h1>kanade</h1>
      <p className="error" role="alert">
        The backend cannot be reached: {message}
      </p>
      <button type="button" onClick={retry}>
        Try again
      </button>
    </main>
  );
}

function SignedIn({ keeper, epoch }: { keeper: SessionKeeper; epoch: number }) {
  const api = useMemo(() => new Api(keeper), [keeper]);
  const session = useQuery({ queryKey: [...keys.session, epoch], queryFn: api.session, retry: false });
  const auth = useMemo<Auth | null>(
    () =>
      session.data
        ? { api, authority: keeper, session: session.data, may: abilities(session.data), signOut: () => void keeper.signOut() }
        : null,
    [api, keeper, session.data],
  );
  if (session.isPending) return <Connecting />;
  if (!auth) return <Unreachable message={session.error?.message ?? "no answer"} retry={() => void session.refetch()} />;
  return (
    <AuthContext.Provider value={auth}>
      <Shell />
    </AuthContext.Provider>
  );
}

/// Follows `/api/events` while signed in and marks what each change makes stale.
function useLive(): StreamState {
  const { authority } = useAuth();
  const client = useQueryClient();
  const [state, setState] = useState<StreamState>("connecting");
  useEffect(() => {
    const abort = new AbortController();
    void follow(
      {
        path: "/api/events",
        auth: authority,
        onEvent: (event) => {
          if (event.event !== "change") return;
          const change = parseChange(event.data);
          if (!change) return;
          for (const queryKey of stale(change)) void client.invalidateQueries({ queryKey });
        },
        onState: (next) => {
          // Changes made before the stream opened (the pages' first requests race it) or while it was down were
          // not pushed: refetch everything each time it goes live.
          if (next === "live") void client.invalidateQueries();
          setState(next);
        },
      },
      abort.signal,
    );
    return () => abort.abort();
  }, [authority, client]);
  return state;
}

const NAV = [
  ["/", "Fleet"],
  ["/agents", "Agents"],
  ["/enrollment", "Enrolment"],
  ["/jobs", "Jobs"],
  ["/schedules", "Schedules"],
  ["/inventory", "Inventory"],
  ["/activity", "Activity"],
  ["/audit", "Audit"],
] as const;

function Shell() {
  const { session, signOut } = useAuth();
  const who = whoText(session);
  const live = useLive();
  const location = useLocation();
  const shown = useRef(location.pathname);
  useEffect(() => {
    const section = NAV.filter(([to]) => to === "/" ? location.pathname === "/" : location.pathname.startsWith(to)).pop();
    document.title = section ? `${section[1]} · kanade` : "kanade";
  }, [location.pathname]);
  useEffect(() => {
    // After navigating (not on the first load), put keyboard and screen-reader focus on the new page's heading.
    if (shown.current === location.pathname) return;
    shown.current = location.pathname;
    document.getElementById("page-title")?.focus();
  }, [location.pathname]);
  const liveText = { connecting: "Connecting…", live: "Live", retrying: "Reconnecting…", unauthorized: "Signed out" }[live];
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">
          <img src={logo} alt="" width="22" height="22" /> kanade
        </span>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([to, label]) => (
              <li key={to}>
                <NavLink to={to} end={to === "/"}>
                  {label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span className={`live live-${live}`} role="status" aria-live="polite" data-testid="live-state">
            <span aria-hidden="true">{live === "live" ? "● " : "○ "}</span>
            {liveText}
          </span>
          <span className="signed-in" data-testid="signed-in-as" title={session.verified ? "proved by your sign-in or token" : "as you named yourself"}>
            <span className="visually-hidden">Signed in as </span>
            {who.name} <span className="role-badge">{who.role}</span>
          </span>
          {session.auth === "token" ? (
            <button type="button" className="link" onClick={signOut}>
              Sign out
            </button>
          ) : null}
        </div>
      </header>
      <main id="main">
        <Routes>
          <Route path="/" element={<FleetPage />} />
          <Route path="/agents" element={<AgentsPage />} />
          <Route path="/agents/:pc" element={<AgentPage />} />
          <Route path="/enrollment" element={<EnrollmentPage />} />
          <Route path="/jobs" element={<JobsPage />} />
          <Route path="/jobs/:job" element={<JobsPage />} />
          <Route path="/schedules" element={<SchedulesPage />} />
          <Route path="/schedules/:id" element={<SchedulePage />} />
          <Route path="/inventory" element={<InventoryPage />} />
          <Route path="/inventory/software" element={<InventorySoftwarePage />} />
          <Route path="/inventory/hardware" element={<InventoryHardwarePage />} />
          <Route path="/inventory/facts" element={<InventoryFactsPage />} />
          <Route path="/inventory/facts/:job" element={<InventoryFactsPage />} />
          <Route path="/activity" element={<ActivityPage />} />
          <Route path="/activity/:exec" element={<ExecutionPage />} />
          <Route path="/audit" element={<AuditPage />} />
          <Route path="*" element={<NotFound />} />
        </Routes>
      </main>
      <footer className="foot muted">kanade {session.version}</footer>
    </>
  );
}

function NotFound() {
  return (
    <section>
      <h1 id="page-title" tabIndex={-1}>
        Not found
      </h1>
      <p>
        There is no page here. <NavLink to="/">Go to the fleet</NavLink>.
      </p>
    </section>
  );
}
