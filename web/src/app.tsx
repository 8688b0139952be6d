/** The application: who is signed in, the navigation, the live feed, and the page of the URL's hash. */

import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
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

/** Where the email verification page (auth's `/verify-email`) says that an address was just verified. */
const accountTabs = new BroadcastChannel("taskflow.account");

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

/** Put the keyboard on the shown page's main heading (made focusable for it, out of the tab order). */
function focusMainHeading() {
  const heading = document.querySelector<HTMLElement>("#content h1, main h1");
  if (!heading) return;
  heading.tabIndex = -1;
  heading.focus();
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
  // A sign-in replaces the form whose button had the keyboard, a sign-out the page whose button had
  // it (or, signed out elsewhere, the page it was on): either way it moves to the new page's heading.
  const started = useRef(false);
  const signedIn = useRef(false);
  const toHeading = useRef(false);
  const inboxChanged = () => {
    setInboxRevision((revision) => revision + 1);
    inboxTabs.postMessage("changed");
  };

  useEffect(() => {
    const stop = onSession((next, reason) => {
      if (started.current && (next !== null) !== signedIn.current) toHeading.current = true;
      signedIn.current = next !== null;
      setUser(next);
      setNotice(next ? "" : reason ?? "");
    });
    resume().catch(() => null).finally(() => {
      started.current = true;
      setStarting(false);
    });
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
    if (!toHeading.current) return;
    toHeading.current = false;
    focusMainHeading();
  }, [user]);

  useEffect(() => {
    document.title = user ? `${PAGES[shownPage(page, user)]} · TaskFlow` : "TaskFlow";
  }, [user, page]);

  const userId = user?.id;
  // The account may change where no event of the feed tells (the verification page, in another tab
  // or on another device): read it again when that page says so and whenever this tab is shown again.
  useEffect(() => {
    if (!userId) return;
    const reread = () => void call<User>("GET", "/auth/me").then(setUser, () => undefined);
    const shown = () => { if (document.visibilityState === "visible") reread(); };
    accountTabs.addEventListener("message", reread);
    document.addEventListener("visibilitychange", shown);
    return () => {
      accountTabs.removeEventListener("message", reread);
      document.removeEventListener("visibilitychange", shown);
    };
  }, [userId]);

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
