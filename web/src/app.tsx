/** The application: who is signed in, the navigation, the live feed, and the page of the URL's hash. */

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { call, onSession, resume, signOut, type User } from "./api";
import { ErrorMessage, Loading } from "./components";
import { AdminConsole } from "./pages/admin";
import { SignIn } from "./pages/account";
import { Inbox } from "./pages/inbox";
import { Profile } from "./pages/profile";
import { StatsPage } from "./pages/stats";
import { Board } from "./pages/tasks";
import { follow, type FeedEvent } from "./stream";

const PAGES = { tasks: "Tasks", stats: "Statistics", inbox: "Inbox", profile: "Profile", admin: "Admin" } as const;
type PageName = keyof typeof PAGES;

function currentPage(): PageName {
  const name = location.hash.replace(/^#\/?/, "");
  return name in PAGES ? (name as PageName) : "tasks";
}

/** The page shown for the URL's `page`: the console only to admins (one demoted while on it, as
 * the refreshed token tells, is shown the board). */
function shownPage(page: PageName, user: User): PageName {
  return page === "admin" && user.role !== "admin" ? "tasks" : page;
}

/** Tells the other tabs of this browser that the inbox changed here (read marks are no events). */
const inboxTabs = new BroadcastChannel("taskflow.inbox");

/** The number of unread notifications, kept current by the live feed and the other tabs. */
function useUnread(user: User | null, revision: number): number {
  const [unread, setUnread] = useState(0);
  useEffect(() => {
    if (!user) return;
    call<{ total: number }>("GET", "/notifications?unread=true&limit=1").then((page) => setUnread(page.total), () => undefined);
  }, [user, revision]);
  return unread;
}

/** The skip link moves the keyboard to the page's content; its `#content` is no route to follow. */
function skipToContent(event: Event) {
  event.preventDefault();
  document.getElementById("content")?.focus();
}

function App() {
  const [user, setUser] = useState<User | null>(null);
  const [starting, setStarting] = useState(true);
  const [notice, setNotice] = useState("");
  const [page, setPage] = useState<PageName>(currentPage());
  const [tasksRevision, setTasksRevision] = useState(0);
  const [inboxRevision, setInboxRevision] = useState(0);
  const [live, setLive] = useState(false);
  const [signOutError, setSignOutError] = useState<unknown>(null);
  const unread = useUnread(user, inboxRevision);
  const inboxChanged = () => {
    setInboxRevision((revision) => revision + 1);
    inboxTabs.postMessage("changed");
  };

  useEffect(() => {
    const stop = onSession((next, reason) => {
      setUser(next);
      setNotice(next ? "" : reason ?? "");
    });
    resume().catch(() => null).finally(() => setStarting(false));
    const onHash = () => setPage(currentPage());
    const onInbox = () => setInboxRevision((revision) => revision + 1);
    window.addEventListener("hashchange", onHash);
    inboxTabs.addEventListener("message", onInbox);
    return () => {
      stop();
      window.removeEventListener("hashchange", onHash);
      inboxTabs.removeEventListener("message", onInbox);
    };
  }, []);

  useEffect(() => {
    document.title = user ? `${PAGES[shownPage(page, user)]} · TaskFlow` : "TaskFlow";
  }, [user, page]);

  const userId = user?.id;
  useEffect(() => {
    if (!userId) return;
    const controller = new AbortController();
    const deliver = (event: FeedEvent) => {
      if (event.type === "task") setTasksRevision((revision) => revision + 1);
      else setInboxRevision((revision) => revision + 1);
    };
    // Back after the feed was away: what changed meanwhile may be past what the server resends
    // (a drop before any event was seen has no Last-Event-ID), so the pages read afresh.
    let away = false;
    const status = (connected: boolean) => {
      setLive(connected);
      if (!connected) away = true;
      else if (away) {
        away = false;
        setTasksRevision((revision) => revision + 1);
        setInboxRevision((revision) => revision + 1);
      }
    };
    void follow(deliver, status, controller.signal);
    return () => controller.abort();
  }, [userId]);

  if (starting) return <main><Loading what="TaskFlow" /></main>;
  if (!user) return <SignIn notice={notice} />;
  const names = (Object.keys(PAGES) as PageName[]).filter((name) => name !== "admin" || user.role === "admin");
  const shown = shownPage(page, user);
  return (
    <>
      <a class="skip" href="#content" onClick={skipToContent}>Skip to content</a>
      <header>
        <span class="brand">TaskFlow</span>
        <nav aria-label="Main">
          {names.map((name) => (
            <a href={`#/${name}`} aria-current={shown === name ? "page" : undefined}>
              {PAGES[name]}
              {name === "inbox" && unread > 0 && <span class="count" aria-label={`${unread} unread`}>{unread}</span>}
            </a>
          ))}
        </nav>
        <span class={live ? "live on" : "live"} role="status">{live ? "Live" : "Offline"}</span>
        <button type="button" onClick={() => signOut().then(() => setSignOutError(null), setSignOutError)}>Sign out</button>
      </header>
      <ErrorMessage error={signOutError} />
      <div id="content" tabIndex={-1}>
        {shown === "tasks" && <Board revision={tasksRevision} changed={() => setTasksRevision(tasksRevision + 1)} />}
        {shown === "stats" && <StatsPage revision={tasksRevision} />}
        {shown === "inbox" && <Inbox revision={inboxRevision} changed={inboxChanged} />}
        {shown === "profile" && <Profile user={user} changed={setUser} />}
        {shown === "admin" && <AdminConsole selfId={user.id} />}
      </div>
    </>
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
