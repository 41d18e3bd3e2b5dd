// A text box mirrored into the URL's query: whether a URL the router applies is one the box wrote (navigation applies
// it later than the keystroke, in a transition) or one that came from elsewhere (a link, the back button), which the
// box then follows. Pure, so the bookkeeping is unit-tested; `useSearchText` in components.tsx keeps the state.

/// `written`: the values the box wrote and has not yet seen in the URL, oldest first. A URL value among them is the
/// box's own (it and every older one are done, since navigations coalesce); any other is followed, and nothing
/// written is pending any more.
export function seenInUrl(written: readonly string[], inUrl: string): { written: string[]; follow: boolean } {
  const ours = written.indexOf(inUrl);
  if (ours >= 0) return { written: written.slice(ours + 1), follow: false };
  return { written: [], follow: true };
}
