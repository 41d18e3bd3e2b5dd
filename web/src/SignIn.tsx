// The sign-in page: a name and password (and the authenticator code when the backend asks for it), or an API token
// instead. What to say after a refusal is `lib/session.ts`'s; the password lives in this form's state only.

import { type FormEvent, useEffect, useRef, useState } from "react";

import { ApiError } from "./lib/api";
import * as apitoken from "./lib/apitoken";
import { type SessionKeeper, secondsLeft, signInProblem, throttledMessage } from "./lib/session";
import logo from "./favicon.svg";

export function SignInPage({ keeper, notice }: { keeper: SessionKeeper; notice: string | null }) {
  const [mode, setMode] = useState<"password" | "token">("password");
  return (
    <main className="centered login">
      <h1>
        <img src={logo} alt="" width="28" height="28" /> kanade
      </h1>
      {mode === "password" ? (
        <PasswordForm keeper={keeper} notice={notice} onUseToken={() => setMode("token")} />
      ) : (
        <TokenForm keeper={keeper} notice={notice} onUsePassword={() => setMode("password")} />
      )}
    </main>
  );
}

function PasswordForm(props: { keeper: SessionKeeper; notice: string | null; onUseToken: () => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [totp, setTotp] = useState("");
  const [askTotp, setAskTotp] = useState(false);
  const [message, setMessage] = useState<{ text: string; kind: "error" | "note" } | null>(
    props.notice ? { text: props.notice, kind: "note" } : null,
  );
  const [waitUntil, setWaitUntil] = useState<number | null>(null);
  const [now, setNow] = useState(() => Date.now());
  const [busy, setBusy] = useState(false);
  const totpInput = useRef<HTMLInputElement>(null);
  const passwordInput = useRef<HTMLInputElement>(null);
  const left = waitUntil === null ? 0 : secondsLeft(waitUntil, now);
  const waiting = left > 0;
  useEffect(() => {
    // The countdown of a throttled name, ticking only while there is a wait.
    if (!waiting) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [waiting]);

  useEffect(() => {
    // Asked for the code (again, after a wrong one): that is where typing goes next.
    if (askTotp && message) totpInput.current?.focus();
  }, [askTotp, message]);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (busy || waiting) return;
    setBusy(true);
    try {
      await props.keeper.signIn({ name, password, totp: askTotp ? totp : undefined });
      // Signed in: this form is about to go; the password goes first.
      setPassword("");
      setTotp("");
    } catch (err) {
      const problem = signInProblem(err, askTotp);
      setAskTotp(problem.totp);
      setTotp("");
      setMessage({ text: problem.message, kind: err instanceof ApiError && err.code === "totp_required" ? "note" : "error" });
      if (problem.waitSeconds !== null) {
        setNow(Date.now());
        setWaitUntil(Date.now() + problem.waitSeconds * 1000);
      } else {
        setWaitUntil(null);
      }
      if (!problem.totp && err instanceof ApiError && err.code === "login_failed") passwordInput.current?.select();
    } finally {
      setBusy(false);
    }
  };
  const text = waitUntil !== null ? throttledMessage(left) : message?.text;
  const isError = waitUntil !== null || message?.kind === "error";
  return (
    <form onSubmit={submit} aria-labelledby="sign-in-title" aria-describedby={text ? "login-message" : undefined}>
      <h2 id="sign-in-title">Sign in</h2>
      <label htmlFor="login-name">Name</label>
      <input
        id="login-name"
        name="username"
        autoComplete="username"
        autoCapitalize="none"
        spellCheck={false}
        value={name}
        onChange={(e) => {
          setName(e.target.value);
          // The backend slows down a name, not the page: another name may try at once.
          if (waitUntil !== null) {
            setWaitUntil(null);
            setMessage(null);
          }
        }}
        required
      />
      <label htmlFor="login-password">Password</label>
      <input
        id="login-password"
        name="password"
        type="password"
        autoComplete="current-password"
        ref={passwordInput}
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
      />
      {askTotp ? (
        <>
          <label htmlFor="login-totp">Authenticator code</label>
          <input
            id="login-totp"
            name="totp"
            ref={totpInput}
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="\s*\d{3}\s*\d{3}\s*"
            maxLength={9}
            value={totp}
            onChange={(e) => setTotp(e.target.value)}
            aria-describedby="totp-help"
            required
          />
          <p id="totp-help" className="help">
            The 6 digits your authenticator app shows for kanade now.
          </p>
        </>
      ) : null}
      {text ? (
        <p id="login-message" className={isError ? "error" : "warn"} role={isError ? "alert" : "status"} data-testid="sign-in-message">
          {text}
        </p>
      ) : null}
      <button type="submit" className="primary" disabled={busy || waiting}>
        {busy ? "Signing in…" : "Sign in"}
      </button>
      <p className="help">
        <button type="button" className="link" onClick={props.onUseToken}>
          Use an API token instead
        </button>{" "}
        (automation's tokens, the static bootstrap token).
      </p>
    </form>
  );
}

function TokenForm(props: { keeper: SessionKeeper; notice: string | null; onUsePassword: () => void }) {
  const [token, setToken] = useState("");
  const [operator, setOperator] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<string | null>(props.notice);
  const [busy, setBusy] = useState(false);
  const recorded = apitoken.operatorName(operator);
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
      await props.keeper.useApiToken(credentials, remember);
    } catch (err) {
      setError(
        err instanceof ApiError && err.unauthorized ? "That token is not accepted by this backend." : (err as Error).message,
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} aria-labelledby="sign-in-title" aria-describedby={error ? "login-error" : undefined}>
      <h2 id="sign-in-title">Sign in</h2>
      <label htmlFor="token">API token</label>
      <input id="token" name="token" type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} required />
      <label htmlFor="operator">Your name</label>
      <input id="operator" name="operator" autoComplete="username" value={operator} onChange={(e) => setOperator(e.target.value)} aria-describedby="operator-help" />
      <p id="operator-help" className="help">
        Recorded in the audit log with what you do
        {"name" in recorded && recorded.name && recorded.name !== operator.trim() ? ` (as ${recorded.name})` : ""}, with the
        shared static token. An account's API token names you itself.
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
      <p className="help">
        <button type="button" className="link" onClick={props.onUsePassword}>
          Use a name and password instead
        </button>
      </p>
    </form>
  );
}
