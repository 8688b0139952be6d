/** Small pieces every page uses: the loading, empty and error states, and the problem's detail. */

import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { Problem, type FieldLabels } from "./api";

/** The text of any error: a problem's `detail` or field messages (named by `labels`), else the error's message. */
export function errorText(error: unknown, labels?: FieldLabels): string {
  if (error instanceof Problem) return error.text(labels);
  return error instanceof Error ? error.message : String(error);
}

/** An error announced to assistive technology at once (role="alert"); `labels` names a form's fields. */
export function ErrorMessage({ error, labels }: { error: unknown; labels?: FieldLabels }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      <p>{errorText(error, labels)}</p>
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted" role="status">Loading {what}…</p>;
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/**
 * Pagination controls for a list answer `{total, page, limit}`. The button that reached the first
 * or last page is disabled, which would drop the keyboard to the page's body: it goes to the other
 * button instead (or, with a single page left, to the "Page … of …" text).
 */
export function Pager({ page, limit, total, go }: { page: number; limit: number; total: number; go: (page: number) => void }) {
  const pages = Math.max(1, Math.ceil(total / limit));
  const previous = useRef<HTMLButtonElement>(null);
  const next = useRef<HTMLButtonElement>(null);
  const where = useRef<HTMLSpanElement>(null);
  const pressed = useRef<HTMLButtonElement | null>(null);
  useEffect(() => {
    const button = pressed.current;
    pressed.current = null;
    const lost = document.activeElement === button || document.activeElement === document.body;
    if (!button?.disabled || !lost) return;
    const other = button === next.current ? previous.current : next.current;
    (other && !other.disabled ? other : where.current)?.focus();
  }, [page, pages]);
  const press = (to: number) => (event: Event) => {
    pressed.current = event.currentTarget as HTMLButtonElement;
    go(to);
  };
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" ref={previous} disabled={page <= 1} onClick={press(page - 1)}>Previous page</button>
      <span ref={where} tabIndex={-1}>Page {page} of {pages} ({total} in all)</span>
      <button type="button" ref={next} disabled={page >= pages} onClick={press(page + 1)}>Next page</button>
    </nav>
  );
}

/** `value` once it has stayed the same for `ms`: a search box asks as the user pauses, not at each keystroke. */
export function useSettled<T>(value: T, ms = 250): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/** A list answer of the API (DESIGN §3). */
export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  limit: number;
}
