// Enrolment: the PCs waiting for approval (Approve, Refuse), the active and revoked credentials (Revoke), and the
// enrolment tokens (New token, shown once with Copy; Revoke). The backend publishes no change note for enrolment,
// so the lists are asked again every `ENROLLMENT_REFRESH_MS` and at once after each action here. The words come from
// `lib/enrollment.ts`.

import { useInfiniteQuery, useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useMemo, useRef, useState } from "react";

import { useAuth } from "../auth";
import { ErrorNote, Stamp, ToneBadge, LoadMore, Loading, PageTitle, PcLink, When } from "../components";
import {
  type CreatedToken,
  type CredentialRow,
  type CredentialStatus,
  EMPTY_TOKEN_FORM,
  ENROLLMENT_OFF,
  ENROLLMENT_REFRESH_MS,
  SHOWN_ONCE,
  type TokenForm,
  type TokenRow,
  approvePrompt,
  checkTokenForm,
  copyText,
  createdToken,
  credentialNote,
  credentialRows,
  enrollmentApi,
  enrollmentKeys,
  isEnrollmentOff,
  retryEnrollment,
  revokePrompt,
  revokeTokenPrompt,
  tokenRows,
} from "../lib/enrollment";
import { nextCursor } from "../lib/paging";

/// Rows per page of each list.
const PAGE_ROWS = 200;

type Enroll = ReturnType<typeof enrollmentApi>;

function useCredentials(enroll: Enroll, status: CredentialStatus) {
  return useInfiniteQuery({
    queryKey: enrollmentKeys.credentials(status),
    queryFn: ({ pageParam }) => enroll.enrollments(status, { cursor: pageParam, limit: PAGE_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
    refetchInterval: ENROLLMENT_REFRESH_MS,
    retry: retryEnrollment,
  });
}

function useTokens(enroll: Enroll) {
  return useInfiniteQuery({
    queryKey: enrollmentKeys.tokens,
    queryFn: ({ pageParam }) => enroll.tokens({ cursor: pageParam, limit: PAGE_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
    refetchInterval: ENROLLMENT_REFRESH_MS,
    retry: retryEnrollment,
  });
}

export function EnrollmentPage() {
  const { api, may } = useAuth();
  const client = useQueryClient();
  const enroll = useMemo(() => enrollmentApi(api), [api]);
  const pending = useCredentials(enroll, "pending");
  const active = useCredentials(enroll, "active");
  const revoked = useCredentials(enroll, "revoked");
  const tokens = useTokens(enroll);
  const [note, setNote] = useState<string | null>(null);
  const refresh = () => void client.invalidateQueries({ queryKey: enrollmentKeys.all });
  const approve = useMutation({
    mutationFn: (row: CredentialRow) => enroll.approve(row.pc),
    onSuccess: (view) => setNote(credentialNote("approve", view)),
    onSettled: refresh,
  });
  // Refreshed when it fails too: a revocation the broker has not taken yet (503 `revocation_pending`) is stored.
  const revoke = useMutation({
    mutationFn: (row: CredentialRow) => enroll.revokeAgent(row.pc),
    onSuccess: (view, row) => setNote(credentialNote("revoke", view, row.pending)),
    onSettled: refresh,
  });
  const lists = [pending, active, revoked, tokens];
  const off = lists.some((q) => isEnrollmentOff(q.error));
  const error = approve.error ?? revoke.error;
  const busy = approve.isPending || revoke.isPending;
  // Only admins enrol, approve and revoke: for the others the lists are read-only.
  const act = !may.administer ? null : {
    approve: (row: CredentialRow) => {
      setNote(null);
      if (window.confirm(approvePrompt(row))) approve.mutate(row);
    },
    revoke: (row: CredentialRow) => {
      setNote(null);
      if (window.confirm(revokePrompt(row))) revoke.mutate(row);
    },
  };
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Enrolment</PageTitle>
      {off ? (
        <p className="warn" role="alert" data-testid="enrollment-off">
          {ENROLLMENT_OFF.lead} <code>{ENROLLMENT_OFF.setting}</code> {ENROLLMENT_OFF.middle}{" "}
          <code>{ENROLLMENT_OFF.command}</code> {ENROLLMENT_OFF.end}
        </p>
      ) : (
        <>
          <p className="muted">
            An agent given a token asks to enrol with a key of its own and gets a credential that names its PC and
            groups. Refreshed every {ENROLLMENT_REFRESH_MS / 1000} s and after each change made here.
          </p>
          {note ? (
            <p className="ok-note" role="status" data-testid="enrollment-note">
              {note}
            </p>
          ) : null}
          {error ? <ErrorNote error={error} what="do that" /> : null}
          <Credentials
            id="pending"
            title="Waiting for approval"
            empty="No PC is waiting for approval. PCs wait here when the backend has [security] approve_enrollments; otherwise a valid token enrols them at once."
            query={pending}
            busy={busy}
            act={act}
          />
          <Credentials id="active" title="Active credentials" empty="No PC has an active credential." query={active} busy={busy} act={act} />
          <Credentials id="revoked" title="Revoked credentials" empty="No credential has been revoked." query={revoked} busy={busy} act={act} />
          <Tokens enroll={enroll} query={tokens} administer={may.administer} />
        </>
      )}
    </section>
  );
}

type CredentialsQuery = ReturnType<typeof useCredentials>;

function Credentials(props: {
  id: CredentialStatus;
  title: string;
  empty: string;
  query: CredentialsQuery;
  busy: boolean;
  /// Null: the caller may not act (only admins enrol), and the rows have no buttons.
  act: { approve: (row: CredentialRow) => void; revoke: (row: CredentialRow) => void } | null;
}) {
  const { id, query, act } = props;
  const rows = query.data ? credentialRows(query.data.pages) : undefined;
  const titleId = `${id}-title`;
  return (
    <section aria-labelledby={titleId} className="section-gap">
      <h2 id={titleId}>{props.title}</h2>
      {query.isPending ? <Loading what={props.title.toLowerCase()} /> : null}
      {query.isError ? <ErrorNote error={query.error} what={`load the ${props.title.toLowerCase()}`} /> : null}
      {rows && rows.length === 0 ? <p className="muted">{props.empty}</p> : null}
      {rows && rows.length > 0 ? (
        <div className="table-wrap">
          <table aria-labelledby={titleId} data-testid={`${id}-table`}>
            <thead>
              <tr>
                <th scope="col">PC</th>
                <th scope="col">Host</th>
                <th scope="col">Groups</th>
                {id === "pending" ? (
                  <>
                    <th scope="col">Token</th>
                    <th scope="col">Key</th>
                    <th scope="col">Requested</th>
                  </>
                ) : null}
                {id === "active" ? (
                  <>
                    <th scope="col">Enrolled</th>
                    <th scope="col">Credential expires</th>
                  </>
                ) : null}
                {id === "revoked" ? <th scope="col">Revoked</th> : null}
                {/* Named in words, not by a visually hidden span, whose absolute position would escape the table's
                    scrolling box and widen a narrow page. */}
                {id === "revoked" ? null : <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.pc} data-pc={row.pc}>
                  <td>{id === "pending" ? <span className="pc-link">{row.pc}</span> : <PcLink pc={row.pc} />}</td>
                  <td>
                    {row.hostname}
                    <br />
                    <span className="muted small">{row.os}</span>
                  </td>
                  <td>{row.groups}</td>
                  {id === "pending" ? (
                    <>
                      <td>
                        <code>{row.token}</code>
                      </td>
                      <td>
                        <code>{row.key}</code>
                      </td>
                      <td>
                        <When at={row.requestedAt} />
                      </td>
                    </>
                  ) : null}
                  {id === "active" ? (
                    <>
                      <td>
                        <When at={row.enrolledAt} />
                      </td>
                      <td>
                        {row.expiresAt ? <When at={row.expiresAt} /> : <span className="muted">not issued yet</span>}
                      </td>
                    </>
                  ) : null}
                  {id === "revoked" ? (
                    <td className="nowrap">
                      <Stamp at={row.revokedAt} />
                    </td>
                  ) : null}
                  {id === "revoked" ? null : (
                    <td>
                      <div className="actions">
                        {row.pending && act ? (
                          <button type="button" className="primary" onClick={() => act.approve(row)} disabled={props.busy} aria-label={`Approve ${row.pc}`}>
                            Approve…
                          </button>
                        ) : null}
                        {row.revocable && act ? (
                          <button
                            type="button"
                            className="danger"
                            onClick={() => act.revoke(row)}
                            disabled={props.busy}
                            aria-label={`${row.pending ? "Refuse" : "Revoke"} ${row.pc}`}
                          >
                            {row.pending ? "Refuse…" : "Revoke…"}
                          </button>
                        ) : null}
                      </div>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore pages={query} what={props.title.toLowerCase()} />
    </section>
  );
}

type TokensQuery = ReturnType<typeof useTokens>;

function Tokens({ enroll, query, administer }: { enroll: Enroll; query: TokensQuery; administer: boolean }) {
  const client = useQueryClient();
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const revoke = useMutation({
    mutationFn: (row: TokenRow) => enroll.revokeToken(row.id),
    onSuccess: (_, row) => setNote(`Revoked the token ${row.id}: it enrols no more PCs.`),
    onSettled: () => void client.invalidateQueries({ queryKey: enrollmentKeys.tokens }),
  });
  const rows = query.data ? tokenRows(query.data.pages) : undefined;
  return (
    <section aria-labelledby="tokens-title" className="section-gap">
      <h2 id="tokens-title">Enrolment tokens</h2>
      {administer ? (
        <NewToken
          enroll={enroll}
          onCreated={(token) => {
            setNote(null);
            setCreated(token);
          }}
        />
      ) : null}
      {created ? <CreatedTokenPanel created={created} onDone={() => setCreated(null)} /> : null}
      {note ? (
        <p className="ok-note section-gap" role="status" data-testid="token-note">
          {note}
        </p>
      ) : null}
      {revoke.error ? <ErrorNote error={revoke.error} what="revoke the token" /> : null}
      {query.isPending ? <Loading what="the tokens" /> : null}
      {query.isError ? <ErrorNote error={query.error} what="load the tokens" /> : null}
      {rows && rows.length === 0 ? <p className="muted section-gap">No tokens yet.</p> : null}
      {rows && rows.length > 0 ? (
        <div className="table-wrap section-gap">
          <table aria-label="Enrolment tokens" data-testid="tokens-table">
            <thead>
              <tr>
                <th scope="col">Token</th>
                <th scope="col">Groups</th>
                <th scope="col">Uses</th>
                <th scope="col">State</th>
                <th scope="col">Expires</th>
                <th scope="col">Created</th>
                <th scope="col">Enrolled</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.id} data-token={row.id}>
                  <td>
                    <code>{row.id}</code>
                  </td>
                  <td>{row.groups}</td>
                  <td className="nowrap">{row.uses}</td>
                  <td>
                    <ToneBadge badge={row.state} />
                    {row.revokedAt ? (
                      <>
                        <br />
                        <span className="muted small">
                          <When at={row.revokedAt} />
                        </span>
                      </>
                    ) : null}
                  </td>
                  <td className="nowrap">
                    <Stamp at={row.expiresAt} />
                  </td>
                  <td>
                    <When at={row.createdAt} /> by {row.createdBy}
                  </td>
                  <td>{row.enrolled}</td>
                  <td>
                    {row.revocable && administer ? (
                      <button
                        type="button"
                        className="danger"
                        onClick={() => {
                          setNote(null);
                          if (window.confirm(revokeTokenPrompt(row))) revoke.mutate(row);
                        }}
                        disabled={revoke.isPending}
                        aria-label={`Revoke token ${row.id}`}
                      >
                        Revoke…
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore pages={query} what="tokens" />
    </section>
  );
}

function NewToken({ enroll, onCreated }: { enroll: Enroll; onCreated: (token: CreatedToken) => void }) {
  const client = useQueryClient();
  const [form, setForm] = useState<TokenForm>(EMPTY_TOKEN_FORM);
  // Errors show once Create was pressed, and then follow what is typed.
  const [tried, setTried] = useState(false);
  const create = useMutation({
    mutationFn: enroll.createToken,
    onSuccess: (reply) => {
      const token = createdToken(reply);
      if (token) onCreated(token);
      setForm(EMPTY_TOKEN_FORM);
      setTried(false);
    },
    onSettled: () => void client.invalidateQueries({ queryKey: enrollmentKeys.tokens }),
  });
  const checked = checkTokenForm(form);
  const errors = tried && !checked.ok ? checked.errors : {};
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setTried(true);
    if (checked.ok) create.mutate(checked.body);
  };
  const field = (key: keyof TokenForm, label: string, help: string, placeholder: string) => {
    const id = `token-${key}`;
    const error = errors[key];
    return (
      <div className="field">
        <label htmlFor={id}>{label}</label>
        <input
          id={id}
          name={key}
          value={form[key]}
          placeholder={placeholder}
          spellCheck={false}
          autoComplete="off"
          inputMode={key === "uses" ? "numeric" : undefined}
          onChange={(e) => setForm({ ...form, [key]: e.target.value })}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${id}-help ${id}-error` : `${id}-help`}
        />
        <p id={`${id}-help`} className="help">
          {help}
        </p>
        {error ? (
          <p id={`${id}-error`} className="error" data-testid={`${id}-error`}>
            {error}
          </p>
        ) : null}
      </div>
    );
  };
  return (
    <form className="panel" onSubmit={submit} aria-labelledby="new-token-title" noValidate>
      <h3 id="new-token-title">New token</h3>
      <div className="inline-fields">
        {field("groups", "Groups", "Comma separated; every PC it enrols gets exactly these. None: each gets what its config asks for.", "lab, office")}
        {field("uses", "Uses", "How many PCs it may enrol: 1 to 100,000 (default 1).", "1")}
        {field("ttl", "Lifetime", "How long it may be used: 1m to 90d, like 24h or 7d (default 24h).", "24h")}
      </div>
      {tried && !checked.ok ? (
        <p className="error" role="alert">
          Fix the fields marked above; nothing was sent.
        </p>
      ) : null}
      {create.isError ? <ErrorNote error={create.error} what="create the token" /> : null}
      <div className="actions section-gap">
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create token"}
        </button>
      </div>
    </form>
  );
}

function CreatedTokenPanel({ created, onDone }: { created: CreatedToken; onDone: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const [copied, setCopied] = useState<boolean | null>(null);
  useEffect(() => {
    // The one chance to take it: keyboard and screen-reader focus go there.
    setCopied(null);
    heading.current?.focus();
  }, [created.token]);
  const copy = async () => setCopied(await copyText(created.token, navigator.clipboard));
  return (
    <section className="panel section-gap" aria-labelledby="created-token-title" data-testid="created-token">
      <h3 id="created-token-title" ref={heading} tabIndex={-1}>
        Token {created.id} created
      </h3>
      <p>
        {created.summary} Usable until <Stamp at={created.expiresAt} />.
      </p>
      <pre className="code" tabIndex={0} aria-label="The new token" data-testid="created-token-text">
        {created.token}
      </pre>
      <p className="warn">{SHOWN_ONCE}</p>
      <div className="actions">
        <button type="button" className="primary" onClick={() => void copy()}>
          Copy token
        </button>
        <button type="button" onClick={onDone}>
          Done
        </button>
        <span role="status" className="small" data-testid="copy-state">
          {copied === true ? "Copied." : copied === false ? "The browser did not let the page copy it: select it and copy it by hand." : ""}
        </span>
      </div>
    </section>
  );
}
