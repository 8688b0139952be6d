/** Small pieces every page uses: the loading, empty and error states, and the problem's detail. */

import type { ComponentChildren } from "preact";
import { Problem } from "./api";

/** The text of any error: a problem's `detail` (and field messages), else the error's message. */
export function errorText(error: unknown): string {
  if (error instanceof Problem) return error.text;
  return error instanceof Error ? error.message : String(error);
}

/** An error announced to assistive technology at once (role="alert"). */
export function ErrorMessage({ error, children }: { error: unknown; children?: ComponentChildren }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      <p>{errorText(error)}</p>
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted" role="status">Loading {what}…</p>;
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** Pagination controls for a list answer `{total, page, limit}`. */
export function Pager({ page, limit, total, go }: { page: number; limit: number; total: number; go: (page: number) => void }) {
  const pages = Math.max(1, Math.ceil(total / limit));
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled={page <= 1} onClick={() => go(page - 1)}>Previous page</button>
      <span>Page {page} of {pages} ({total} in all)</span>
      <button type="button" disabled={page >= pages} onClick={() => go(page + 1)}>Next page</button>
    </nav>
  );
}

/** A list answer of the API (DESIGN §3). */
export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  limit: number;
}
