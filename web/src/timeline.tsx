// An agent's timeline: its starts, self-updates and outbox filling and draining, newest first, a page at a time.
// Kept fresh by the `timeline` change notes (App refetches `keys.timeline(pc)`); what each entry says is decided in
// `lib/timeline.ts`.

import { useInfiniteQuery } from "@tanstack/react-query";

import { useAuth } from "./auth";
import { ErrorNote, Loading, When } from "./components";
import { keys } from "./lib/live";
import { entries, isBadNews, kindWords, summary } from "./lib/timeline";

const PAGE = 20;

export function AgentTimeline({ pc }: { pc: string }) {
  const { api } = useAuth();
  const timeline = useInfiniteQuery({
    queryKey: keys.timeline(pc),
    queryFn: ({ pageParam }) => api.agentEvents(pc, { limit: PAGE, cursor: pageParam }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next ?? undefined,
  });
  const shown = timeline.data ? entries(timeline.data.pages) : [];
  return (
    <section aria-labelledby="timeline-title" className="panel timeline-panel">
      <h2 id="timeline-title">Timeline</h2>
      {timeline.isPending ? <Loading what="the timeline" /> : null}
      {timeline.isError ? <ErrorNote error={timeline.error} what="load the timeline" /> : null}
      {timeline.data && shown.length === 0 ? <p className="muted">Nothing on this agent's timeline yet.</p> : null}
      {shown.length > 0 ? (
        <ol className="timeline" aria-label="timeline entries, newest first">
          {shown.map((entry) => (
            <li key={entry.event_id} className={isBadNews(entry.kind) ? "warn" : undefined} data-kind={entry.kind}>
              <strong>{kindWords(entry.kind)}</strong> <When at={entry.at} />
              {summary(entry) ? <span className="muted"> — {summary(entry)}</span> : null}
            </li>
          ))}
        </ol>
      ) : null}
      {timeline.hasNextPage ? (
        <button type="button" onClick={() => timeline.fetchNextPage()} disabled={timeline.isFetchingNextPage}>
          {timeline.isFetchingNextPage ? "Loading…" : "Load more"}
        </button>
      ) : null}
    </section>
  );
}
