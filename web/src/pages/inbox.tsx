/** The inbox: `GET /notifications`, newest first, with read marks; new ones arrive live. */

import { useEffect, useRef, useState } from "preact/hooks";
import { call } from "../api";
import { Empty, ErrorMessage, Loading, Pager, type Page } from "../components";
import { showDate } from "../format";

export interface Notification {
  id: string;
  kind: string;
  title: string;
  body: string;
  created_at: string;
  read_at: string | null;
  /** A reminder's due time (RFC 3339, UTC); null for other kinds. */
  due_date?: string | null;
}

/**
 * What an item says. A reminder's body names the due time in UTC (`YYYY-MM-DD HH:MM UTC`, as its
 * email must: notify knows no reader's time zone); here that text is the time in the browser's zone.
 */
function bodyOf(item: Notification): string {
  if (item.kind !== "reminder" || !item.due_date) return item.body;
  const utc = `${new Date(item.due_date).toISOString().slice(0, 16).replace("T", " ")} UTC`;
  return item.body.replace(utc, showDate(item.due_date));
}

/**
 * The inbox page; `revision` changes when a notification arrives or another tab marks some read.
 * Marking one read hands the keyboard to the next unread item's "Mark read" (or, none left, the
 * page's heading), since the button pressed goes away with its mark. Only the answer to the latest
 * request is shown: one asked for before the mark (a live notification's) may arrive after it and
 * would show the marked item unread again, and the keyboard on its button about to go.
 */
export function Inbox({ revision, changed }: { revision: number; changed: () => void }) {
  const [page, setPage] = useState<Page<Notification> | null>(null);
  const [number, setNumber] = useState(1);
  const [unreadOnly, setUnreadOnly] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [local, setLocal] = useState(0);
  /** After a "Mark read": the position of the item marked, where the next unread one is looked for. */
  const focusFrom = useRef<number | null>(null);
  const list = useRef<HTMLUListElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    const unread = unreadOnly ? "&unread=true" : "";
    let current = true;
    call<Page<Notification>>("GET", `/notifications?page=${number}&limit=20${unread}`).then(
      (answer) => { if (current) { setPage(answer); setError(null); } },
      (problem) => { if (current) setError(problem); },
    );
    return () => { current = false; };
  }, [number, unreadOnly, revision, local]);

  useEffect(() => {
    if (focusFrom.current === null || !page) return;
    const buttons = Array.from(list.current?.children ?? [], (item) => item.querySelector("button"));
    const next = buttons.slice(focusFrom.current).find(Boolean) ?? buttons.find(Boolean);
    (next ?? heading.current)?.focus();
    focusFrom.current = null;
  }, [page]);

  async function mark(path: string, position: number | null = null) {
    try {
      await call("POST", path);
      focusFrom.current = position;
      setLocal(local + 1);
      changed();
    } catch (problem) {
      setError(problem);
    }
  }

  return (
    <main>
      <h1 ref={heading} tabIndex={-1}>Inbox</h1>
      <div class="row">
        <label class="check"><input type="checkbox" checked={unreadOnly} onChange={(event) => { setUnreadOnly(event.currentTarget.checked); setNumber(1); }} />Unread only</label>
        <button type="button" onClick={() => void mark("/notifications/read-all")}>Mark all read</button>
      </div>
      <ErrorMessage error={error} />
      {!page && !error && <Loading what="notifications" />}
      {page && page.total === 0 && <Empty>{unreadOnly ? "Nothing unread." : "No notifications yet."}</Empty>}
      {page && page.total > 0 && (
        <>
          <ul class="notifications" aria-label="Notifications" ref={list}>
            {page.items.map((item, position) => (
              <li class={item.read_at ? "read" : "unread"}>
                <h2>{item.title}{item.read_at ? "" : <span class="visually-hidden"> (unread)</span>}</h2>
                <p>{bodyOf(item)}</p>
                <p class="meta">{showDate(item.created_at)}</p>
                {!item.read_at && (
                  <button type="button" aria-label={`Mark “${item.title}” read`} onClick={() => void mark(`/notifications/${item.id}/read`, position)}>Mark read</button>
                )}
              </li>
            ))}
          </ul>
          <Pager page={page.page} limit={page.limit} total={page.total} go={setNumber} />
        </>
      )}
    </main>
  );
}
