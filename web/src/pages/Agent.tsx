// One agent: what it reported, a ping, the config that applies to it, its recent results and its timeline; and, in
// tabs, its inventory (hardware, software and the change log, with a button that asks it to report now) and its
// performance, live or over a range. The tab is in the URL (`?tab=`) so it can be linked to.

import { type UseQueryResult, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";

import { HardwareTab, HistoryTab, SoftwareTab } from "../agentInventory";
import { PerformanceTab } from "../agentPerf";
import { useAuth } from "../auth";
import { ErrorNote, Loading, PageTitle, ResultsTable, TabPanel, Tabs, When } from "../components";
import { forgetPrompt, statusOf } from "../lib/agents";
import { bytes, span } from "../lib/format";
import { keys } from "../lib/live";
import { StatusBadge } from "./Agents";
import { AgentTimeline } from "../timeline";
import type { Agent, AgentConfig, ResultRow } from "../lib/types";

const TABS = [
  ["overview", "Overview"],
  ["hardware", "Hardware"],
  ["software", "Software"],
  ["history", "History"],
  ["performance", "Performance"],
] as const;

export function AgentPage() {
  const { pc = "" } = useParams();
  const { api, may } = useAuth();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const tab = TABS.find(([id]) => id === params.get("tab"))?.[0] ?? "overview";
  const refresh = useMutation({ mutationFn: () => api.refreshInventory({ pcs: [pc], groups: [], all: false, full: false }) });
  const queries = useQueryClient();
  const forget = useMutation({
    mutationFn: () => api.removeAgent(pc, false),
    onSuccess: async () => {
      await queries.invalidateQueries({ queryKey: keys.agents });
      void navigate("/agents");
    },
  });
  // Once it is being forgotten, the agent's own queries would only answer 404: they stop.
  const leaving = forget.isPending || forget.isSuccess;
  const agent = useQuery({
    queryKey: keys.agent(pc),
    queryFn: () => api.agent(pc),
    refetchInterval: 15_000,
    enabled: !leaving,
  });
  const config = useQuery({
    queryKey: keys.agentConfig(pc),
    queryFn: () => api.agentConfig(pc),
    enabled: agent.isSuccess && !leaving,
  });
  const results = useQuery({
    queryKey: keys.results(`pc_id=${pc}&limit=20`),
    queryFn: async () => (await api.results({ pc_id: pc, limit: 20 })).items,
  });
  const ping = useMutation({ mutationFn: () => api.ping(pc) });
  const a = agent.data;
  return (
    <section aria-labelledby="page-title">
      <PageTitle
        actions={
          <>
            <button type="button" onClick={() => ping.mutate()} disabled={ping.isPending}>
              {ping.isPending ? "Pinging…" : "Ping"}
            </button>
            {may.operate ? (
              <>
                {" "}
                <button type="button" onClick={() => refresh.mutate()} disabled={refresh.isPending}>
                  {refresh.isPending ? "Asking…" : "Refresh inventory"}
                </button>
              </>
            ) : null}
            {may.administer ? (
              <>
                {" "}
                <button
                  type="button"
                  onClick={() => a && window.confirm(forgetPrompt(pc, statusOf(a))) && forget.mutate()}
                  disabled={!a || forget.isPending}
                >
                  {forget.isPending ? "Forgetting…" : "Forget…"}
                </button>
              </>
            ) : null}
          </>
        }
      >
        {pc} {a ? <StatusBadge status={statusOf(a)} /> : null}
      </PageTitle>
      <p>
        <Link to="/agents">← All agents</Link>
      </p>
      <div role="status" aria-live="polite" className="ping-result">
        {ping.isSuccess ? (
          <p className="ok-note">
            Answered in {ping.data.rtt_ms.toFixed(1)} ms: {ping.data.agent_version} on {ping.data.os}, up{" "}
            {span(ping.data.uptime_secs)}.
          </p>
        ) : null}
        {ping.isError ? <ErrorNote error={ping.error} what="ping" /> : null}
        {refresh.isSuccess ? (
          <p className="ok-note" data-testid="refresh-result">
            {refresh.data.asked === 0
              ? "No agent was asked: the backend knows no such agent."
              : `Asked ${pc} to collect its inventory now. What changed arrives in a moment${a && !a.online ? ", once it is back online" : ""}; the tabs update when it does.`}
          </p>
        ) : null}
        {refresh.isError ? <ErrorNote error={refresh.error} what="ask for an inventory" /> : null}
        {forget.isError ? <ErrorNote error={forget.error} what="forget the agent" /> : null}
      </div>
      <Tabs
        label={`${pc}'s pages`}
        prefix="agent"
        tabs={TABS}
        current={tab}
        onSelect={(id) => {
          const next = new URLSearchParams(params);
          if (id === "overview") next.delete("tab");
          else next.set("tab", id);
          // The performance tab's range is its own.
          if (id !== "performance") next.delete("range");
          setParams(next, { replace: true });
        }}
      />
      {tab === "hardware" ? (
        <TabPanel prefix="agent" id="hardware">
          <HardwareTab pc={pc} />
        </TabPanel>
      ) : null}
      {tab === "software" ? (
        <TabPanel prefix="agent" id="software">
          <SoftwareTab pc={pc} />
        </TabPanel>
      ) : null}
      {tab === "history" ? (
        <TabPanel prefix="agent" id="history">
          <HistoryTab pc={pc} />
        </TabPanel>
      ) : null}
      {tab === "performance" ? (
        <TabPanel prefix="agent" id="performance">
          <PerformanceTab pc={pc} />
        </TabPanel>
      ) : null}
      {tab === "overview" ? (
        <TabPanel prefix="agent" id="overview">
          <Overview pc={pc} agent={agent} results={results} config={config} />
        </TabPanel>
      ) : null}
    </section>
  );
}

function Overview({
  pc,
  agent,
  results,
  config,
}: {
  pc: string;
  agent: UseQueryResult<Agent>;
  results: UseQueryResult<ResultRow[]>;
  config: UseQueryResult<AgentConfig>;
}) {
  const a = agent.data;
  return (
    <>
      {agent.isPending ? <Loading what="the agent" /> : null}
      {agent.isError ? <ErrorNote error={agent.error} what="load the agent" /> : null}
      {a ? (
        <dl className="facts">
          <dt>Hostname</dt>
          <dd>{a.hostname || "—"}</dd>
          <dt>OS</dt>
          <dd>
            {a.os} {a.os_version} {a.arch}
          </dd>
          <dt>Agent version</dt>
          <dd>{a.agent_version}</dd>
          <dt>Groups</dt>
          <dd>{a.groups.join(", ") || "none"}</dd>
          <dt>Last seen</dt>
          <dd>
            <When at={a.last_seen} />
          </dd>
          <dt>First seen</dt>
          <dd>
            <When at={a.first_seen} />
          </dd>
          <dt>Up for</dt>
          <dd>{span(a.uptime_secs)}</dd>
          <dt>Running</dt>
          <dd>{a.running} run(s)</dd>
          <dt>Outbox</dt>
          <dd>
            {a.outbox_pending} result(s), {bytes(a.outbox_bytes)}
            {a.outbox_full ? <strong> — full: new results go without their output</strong> : null}
          </dd>
          <dt>Memory</dt>
          <dd>{bytes(a.rss_bytes)}</dd>
        </dl>
      ) : null}

      <div className="columns">
        <section aria-labelledby="config-title" className="panel">
          <h2 id="config-title">Effective config</h2>
          {config.isError ? <ErrorNote error={config.error} what="load the config" /> : null}
          {config.data && config.data.values.length === 0 ? (
            <p className="muted">Nothing set for this agent: it runs with its built-in defaults and its config file.</p>
          ) : null}
          {config.data && config.data.values.length > 0 ? (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Key</th>
                    <th scope="col">Value</th>
                    <th scope="col">Set by</th>
                  </tr>
                </thead>
                <tbody>
                  {config.data.values.map((v) => (
                    <tr key={v.key}>
                      <td>
                        <code>{v.key}</code>
                      </td>
                      <td>
                        <code>{JSON.stringify(v.value)}</code>
                      </td>
                      <td>{v.from}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
          {config.data?.conflicts.map((c) => (
            <p key={c} className="warn">
              Conflict: {c}
            </p>
          ))}
        </section>

        <section aria-labelledby="results-title" className="panel">
          <h2 id="results-title">Recent results</h2>
          {results.isError ? <ErrorNote error={results.error} what="load results" /> : null}
          {results.data && results.data.length === 0 ? <p className="muted">No results yet.</p> : null}
          {results.data && results.data.length > 0 ? <ResultsTable results={results.data} /> : null}
        </section>
      </div>

      <AgentTimeline pc={pc} />
    </>
  );
}
