// The dashboard's shell: sign-in, the live change stream, navigation and the routes.

import { MutationCache, QueryCache, QueryClient, QueryClientProvider, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useMemo, useRef, useState } from "react";
import { BrowserRouter, NavLink, Route, Routes, useLocation } from "react-router";

import { type Auth, AuthContext, useAuth } from "./auth";
import { Api, ApiError, type Credentials } from "./lib/api";
import { keys, parseChange, stale } from "./lib/live";
import * as storage from "./lib/session";
import { type StreamState, follow } from "./lib/sse";
import logo from "./favicon.svg";
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
  const [credentials, setCredentials] = useState<Credentials | null>(() => storage.load());
  const signOut = useRef<() => void>(() => {});
  const client = useMemo(() => {
    // A token that stops being accepted (revoked, the backend's config changed) ends the session. The sign-in
    // check itself is left out: its 401 is how the sign-in page learns that it is needed.
    const onError = (error: unknown, session = false) => {
      if (!session && error instanceof ApiError && error.unauthorized) signOut.current();
    };
    return new QueryClient({
      queryCache: new QueryCache({ onError: (error, query) => onError(error, query.meta?.session === true) }),
      mutationCache: new MutationCache({ onError: (error) => onError(error) }),
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
  }, []);
  signOut.current = () => {
    if (credentials === null) return;
    storage.clear();
    client.clear();
    setCredentials(null);
  };
  return (
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <Gate credentials={credentials} onSignIn={setCredentials} signOut={() => signOut.current()} />
      </BrowserRouter>
    </QueryClientProvider>
  );
}

function Gate(props: { credentials: Credentials | null; onSignIn: (c: Credentials) => void; signOut: () => void }) {
  const api = useMemo(() => new Api(props.credentials), [props.credentials]);
  const session = useQuery({ queryKey: [...keys.session, props.credentials?.token ?? "", props.credentials?.operator ?? ""], queryFn: api.session, retry: false, meta: { session: true } });
  if (session.isPending) {
    return (
      <main className="centered">
        <p role="status">Connecting to the backend…</p>
      </main>
    );
  }
  if (session.isError) {
    const unauthorized = session.error instanceof ApiError && session.error.unauthorized;
    if (unauthorized) return <Login onSignIn={props.onSignIn} rejected={props.credentials !== null} />;
    return (
      <main className="centered">
        <h1>kanade</h1>
        <p className="error" role="alert">
          The backend cannot be reached: {session.error.message}
        </p>
        <button type="button" onClick={() => session.refetch()}>
          Try again
        </button>
      </main>
    );
  }
  const auth: Auth = { api, credentials: props.credentials, session: session.data, signOut: props.signOut };
  return (
    <AuthContext.Provider value={auth}>
      <Shell />
    </AuthContext.Provider>
  );
}

function Login({ onSignIn, rejected }: { onSignIn: (c: Credentials) => void; rejected: boolean }) {
  const [token, setToken] = useState("");
  const [operator, setOperator] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<string | null>(rejected ? "The saved sign-in is no longer accepted." : null);
  const [busy, setBusy] = useState(false);
  const recorded = storage.operatorName(operator);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const credentials = { token: token.trim(), operator: operator.trim() };
    if (!credentials.token) {
      setError("Enter the API token.");
      return;
    }
    if ("error" in recorded) {
      setError(`Your name: ${recorded.error}.`);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await new Api(credentials).session();
      storage.save(credentials, remember);
      onSignIn(credentials);
    } catch (err) {
      setError(
        err instanceof ApiError && err.unauthorized ? "That token is not accepted by this backend." : (err as Error).message,
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="centered login">
      <h1>
        <img src={logo} alt="" width="28" height="28" /> kanade
      </h1>
      <form onSubmit={submit} aria-describedby={error ? "login-error" : undefined}>
        <h2>Sign in</h2>
        <label htmlFor="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="current-password" value={token} onChange={(e) => setToken(e.target.value)} required />
        <label htmlFor="operator">Your name</label>
        <input id="operator" name="operator" autoComplete="username" value={operator} onChange={(e) => setOperator(e.target.value)} aria-describedby="operator-help" />
        <p id="operator-help" className="help">
          Recorded in the audit log with what you do
          {"name" in recorded && recorded.name && recorded.name !== operator.trim() ? ` (as ${recorded.name})` : ""}. A
          personal operator token names you itself.
        </p>
        <label className="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} /> Remember me on this
          browser
        </label>
        {error ? (
          <p id="login-error" className="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

/// Follows `/api/events` while signed in and marks what each change makes stale.
function useLive(): StreamState {
  const { credentials } = useAuth();
  const client = useQueryClient();
  const [state, setState] = useState<StreamState>("connecting");
  useEffect(() => {
    const abort = new AbortController();
    void follow(
      {
        path: "/api/events",
        credentials,
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
  }, [credentials, client]);
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
          <span title={session.verified ? "proved by your operator token" : "as you named yourself"}>
            {session.actor}
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
