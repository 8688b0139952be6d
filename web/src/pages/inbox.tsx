/** The inbox: `GET /notifications`, newest first, with read marks; new ones arrive live. */

import { useEffect, useState } from "preact/hooks";
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
}

export function Inbox({ revision, changed }: { revision: number; changed: () => void }) {
  const [page, setPage] = useState<Page<Notification> | null>(null);
  const [number, setNumber] = useState(1);
  const [unreadOnly, setUnreadOnly] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [local, setLocal] = useState(0);

  useEffect(() => {
    const unread = unreadOnly ? "&unread=true" : "";
    call<Page<Notification>>("GET", `/notifications?page=${number}&limit=20${unread}`).then(
      (answer) => { setPage(answer); setError(null); },
      setError,
    );
  }, [number, unreadOnly, revision, local]);

  async function mark(path: string) {
    try {
      await call("POST", path);
      setLocal(local + 1);
      changed();
    } catch (problem) {
      setError(problem);
    }
  }

  return (
    <main>
      <h1>Inbox</h1>
      <div class="row">
        <label class="check"><input type="checkbox" checked={unreadOnly} onChange={(event) => { setUnreadOnly(event.currentTarget.checked); setNumber(1); }} />Unread only</label>
        <button type="button" onClick={() => void mark("/notifications/read-all")}>Mark all read</button>
      </div>
      <ErrorMessage error={error} />
      {!page && !error && <Loading what="notifications" />}
      {page && page.total === 0 && <Empty>{unreadOnly ? "Nothing unread." : "No notifications yet."}</Empty>}
      {page && page.total > 0 && (
        <>
          <ul class="notifications" aria-label="Notifications">
            {page.items.map((item) => (
              <li class={item.read_at ? "read" : "unread"}>
                <h2>{item.title}{item.read_at ? "" : <span class="visually-hidden"> (unread)</span>}</h2>
                <p>{item.body}</p>
                <p class="meta">{showDate(item.created_at)}</p>
                {!item.read_at && (
                  <button type="button" aria-label={`Mark “${item.title}” read`} onClick={() => void mark(`/notifications/${item.id}/read`)}>Mark read</button>
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
