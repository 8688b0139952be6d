/** The admin console: users (search, role, activate/deactivate), system stats, and the audit log. */

import type { RefObject } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { call } from "../api";
import { Empty, ErrorMessage, Loading, Pager, useSettled, type Page } from "../components";
import { fromLocalInput, showDate } from "../format";
import { BarChart } from "./stats";

interface AdminUser {
  id: string;
  email: string;
  name: string;
  role: "user" | "admin";
  active: boolean;
  created_at: string;
  last_login_at: string | null;
  task_count: number;
}

interface SystemStats {
  users: { total: number; active: number; admins: number };
  tasks: { total: number; by_status: { todo: number; in_progress: number; done: number }; overdue: number };
  events: { processed: number; dead_lettered: number };
}

interface AuditEntry {
  id: string;
  time: string;
  type: string;
  actor_id: string | null;
  subject_id: string;
  summary: string;
}

/** A change of a user waiting for the admin's confirmation (a deactivation, or the role chosen). */
type Pending = { role: AdminUser["role"] } | { active: false };

/**
 * One user. A change of role or a deactivation is sent only once confirmed in the row (an arrow
 * key on the select would otherwise promote someone, and either is mailed to the user); the
 * confirmation stands in for the Deactivate button, so the keyboard goes on to it from the select
 * and is put on it after Deactivate. Confirming or cancelling hands the keyboard back to the
 * control that asked. Activating is harmless and goes at once.
 */
function UserRow({ listed, changed, self }: { listed: AdminUser; changed: () => void; self: boolean }) {
  const [error, setError] = useState<unknown>(null);
  // The answer of a change is the account as auth applied it; the list (admin's read model) follows by events.
  const [user, setUser] = useState(listed);
  useEffect(() => setUser(listed), [listed]);
  const [pending, setPending] = useState<Pending | null>(null);
  const select = useRef<HTMLSelectElement>(null);
  const action = useRef<HTMLButtonElement>(null);
  const confirm = useRef<HTMLButtonElement>(null);
  const focus = useRef<RefObject<HTMLElement | null> | null>(null);
  useEffect(() => {
    focus.current?.current?.focus();
    focus.current = null;
  }, [pending]);

  async function change(fields: Partial<Pick<AdminUser, "role" | "active">>) {
    setError(null);
    try {
      setUser({ ...user, ...(await call<Partial<AdminUser>>("PATCH", `/admin/users/${user.id}`, fields)) });
      changed();
    } catch (problem) {
      setError(problem);
    }
  }
  /** Ask for `next` (none: the question goes away), the keyboard then on `then`. */
  function ask(next: Pending | null, then: RefObject<HTMLElement | null> | null) {
    focus.current = then;
    setPending(next);
  }
  function cancel() {
    ask(null, pending && "role" in pending ? select : action);
  }
  function confirmed() {
    if (!pending) return;
    cancel();
    void change(pending);
  }

  const role = pending && "role" in pending ? pending.role : user.role;
  const question = !pending ? ""
    : "active" in pending ? `Deactivate ${user.email}? They are signed out everywhere.`
    : pending.role === "admin" ? `Make ${user.email} an admin? They can then manage every user.`
    : `Make ${user.email} a regular user? They lose the admin console.`;
  const verb = !pending ? ""
    : "active" in pending ? `Deactivate ${user.email} now`
    : pending.role === "admin" ? `Make ${user.email} an admin` : `Make ${user.email} a regular user`;
  return (
    <tr>
      <td data-label="User">{user.name}<br /><span class="muted">{user.email}</span></td>
      <td data-label="Role">
        <label class="visually-hidden" for={`role-${user.id}`}>Role of {user.email}</label>
        <select id={`role-${user.id}`} ref={select} value={role} disabled={self}
                onChange={(event) => {
                  const chosen = event.currentTarget.value as AdminUser["role"];
                  ask(chosen === user.role ? null : { role: chosen }, null);
                }}>
          <option value="user">user</option>
          <option value="admin">admin</option>
        </select>
      </td>
      <td data-label="Status">{user.active ? "Active" : "Deactivated"}</td>
      <td data-label="Tasks">{user.task_count}</td>
      <td data-label="Last sign-in">{showDate(user.last_login_at) || "never"}</td>
      <td data-label="Actions">
        <p class="confirm" role="status">{question}</p>
        {pending ? (
          <div class="inline">
            <button type="button" ref={confirm} class={"active" in pending ? "danger" : "primary"} onClick={confirmed}>{verb}</button>
            <button type="button" onClick={cancel} aria-label={`Cancel, keep ${user.email} ${"active" in pending ? "active" : user.role === "admin" ? "an admin" : "a regular user"}`}>Cancel</button>
          </div>
        ) : !self && (
          <button type="button" ref={action} class={user.active ? "danger" : ""}
                  onClick={() => (user.active ? ask({ active: false }, confirm) : void change({ active: true }))}
                  aria-label={`${user.active ? "Deactivate" : "Activate"} ${user.email}`}>
            {user.active ? "Deactivate" : "Activate"}
          </button>
        )}
        <ErrorMessage error={error} />
      </td>
    </tr>
  );
}

function Users({ selfId, revision, changed }: { selfId: string; revision: number; changed: () => void }) {
  const [q, setQ] = useState("");
  const [role, setRole] = useState("");
  const [active, setActive] = useState("");
  const [number, setNumber] = useState(1);
  const [page, setPage] = useState<Page<AdminUser> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const searched = useSettled(q);
  useEffect(() => {
    const params = new URLSearchParams({ page: String(number), limit: "20" });
    if (searched.trim()) params.set("q", searched.trim());
    if (role) params.set("role", role);
    if (active) params.set("active", active);
    let current = true;
    call<Page<AdminUser>>("GET", `/admin/users?${params}`).then(
      (answer) => { if (current) { setPage(answer); setError(null); } },
      (problem) => { if (current) setError(problem); },
    );
    return () => { current = false; };
  }, [searched, role, active, number, revision]);
  return (
    <section aria-labelledby="users">
      <h2 id="users">Users</h2>
      <form class="filters" role="search" onSubmit={(event) => event.preventDefault()}>
        <label>Search users<input type="search" value={q} onInput={(event) => { setQ(event.currentTarget.value); setNumber(1); }} /></label>
        <label>Role
          <select value={role} onChange={(event) => { setRole(event.currentTarget.value); setNumber(1); }}>
            <option value="">Any role</option><option value="user">user</option><option value="admin">admin</option>
          </select>
        </label>
        <label>Status
          <select value={active} onChange={(event) => { setActive(event.currentTarget.value); setNumber(1); }}>
            <option value="">Any status</option><option value="true">Active</option><option value="false">Deactivated</option>
          </select>
        </label>
      </form>
      <ErrorMessage error={error} />
      {!page && !error && <Loading what="users" />}
      {page && page.total === 0 && <Empty>No user matches.</Empty>}
      {page && page.total > 0 && (
        <>
          <div class="table">
            <table class="stacked">
              <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Tasks</th><th scope="col">Last sign-in</th><th scope="col">Actions</th></tr></thead>
              <tbody>{page.items.map((user) => <UserRow key={user.id} listed={user} self={user.id === selfId} changed={changed} />)}</tbody>
            </table>
          </div>
          <Pager page={page.page} limit={page.limit} total={page.total} go={setNumber} />
        </>
      )}
    </section>
  );
}

function System({ revision }: { revision: number }) {
  const [stats, setStats] = useState<SystemStats | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { call<SystemStats>("GET", "/admin/stats").then(setStats, setError); }, [revision]);
  return (
    <section aria-labelledby="system">
      <h2 id="system">System</h2>
      <ErrorMessage error={error} />
      {!stats && !error && <Loading what="system statistics" />}
      {stats && (
        <>
          <dl class="figures">
            <div><dt>Users</dt><dd>{stats.users.total}</dd></div>
            <div><dt>Active users</dt><dd>{stats.users.active}</dd></div>
            <div><dt>Admins</dt><dd>{stats.users.admins}</dd></div>
            <div><dt>Tasks</dt><dd>{stats.tasks.total}</dd></div>
            <div><dt>Overdue tasks</dt><dd>{stats.tasks.overdue}</dd></div>
            <div><dt>Events processed</dt><dd>{stats.events.processed}</dd></div>
            <div><dt>Events dead-lettered</dt><dd>{stats.events.dead_lettered}</dd></div>
          </dl>
          <div class="charts">
            <BarChart title="All tasks by status" bars={[["To do", stats.tasks.by_status.todo], ["In progress", stats.tasks.by_status.in_progress], ["Done", stats.tasks.by_status.done]]} />
          </div>
        </>
      )}
    </section>
  );
}

function Audit({ revision }: { revision: number }) {
  const [filters, setFilters] = useState({ type: "", actor_id: "", subject_id: "", since: "" });
  const [number, setNumber] = useState(1);
  const [page, setPage] = useState<Page<AuditEntry> | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const params = new URLSearchParams({ page: String(number), limit: "20" });
    for (const name of ["type", "actor_id", "subject_id"] as const) if (filters[name].trim()) params.set(name, filters[name].trim());
    let since: string | null;
    try {
      since = fromLocalInput(filters.since, "since");
    } catch (problem) {
      setPage(null);  // no list that looks filtered while the filter is refused
      setError(problem);
      return;
    }
    if (since) params.set("since", since);
    let current = true;
    call<Page<AuditEntry>>("GET", `/admin/audit?${params}`).then(
      (answer) => { if (current) { setPage(answer); setError(null); } },
      (problem) => { if (current) setError(problem); },
    );
    return () => { current = false; };
  }, [filters, number, revision]);
  // What is typed in the text filters, applied on Enter or leaving the field (as `set`) and kept
  // meanwhile: a re-render would otherwise put the applied value back into the field.
  const [typed, setTyped] = useState({ type: "", actor_id: "", subject_id: "" });
  const set = (name: keyof typeof filters) => (event: Event) => {
    setFilters({ ...filters, [name]: (event.currentTarget as HTMLInputElement).value });
    setNumber(1);
  };
  const text = (name: keyof typeof typed) => ({
    value: typed[name],
    onInput: (event: Event) => setTyped({ ...typed, [name]: (event.currentTarget as HTMLInputElement).value }),
    onChange: set(name),
  });
  return (
    <section aria-labelledby="audit">
      <h2 id="audit">Audit log</h2>
      <form class="filters" role="search" onSubmit={(event) => event.preventDefault()}>
        <label>Event type<input {...text("type")} placeholder="user.deactivated" /></label>
        <label>Actor id<input {...text("actor_id")} /></label>
        <label>Subject id<input {...text("subject_id")} /></label>
        <label>Since<input type="datetime-local" value={filters.since} onChange={set("since")} /></label>
      </form>
      <ErrorMessage error={error} />
      {!page && !error && <Loading what="the audit log" />}
      {page && page.total === 0 && <Empty>No entry matches.</Empty>}
      {page && page.total > 0 && (
        <>
          <div class="table">
            <table>
              <thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Summary</th><th scope="col">Actor</th><th scope="col">Subject</th></tr></thead>
              <tbody>
                {page.items.map((entry) => (
                  <tr key={`${entry.type} ${entry.id}`}>
                    <td>{showDate(entry.time)}</td><td>{entry.type}</td><td>{entry.summary}</td>
                    <td class="id">{entry.actor_id ?? "—"}</td><td class="id">{entry.subject_id}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager page={page.page} limit={page.limit} total={page.total} go={setNumber} />
        </>
      )}
    </section>
  );
}

export function AdminConsole({ selfId }: { selfId: string }) {
  const [revision, setRevision] = useState(0);
  const changed = () => setRevision(revision + 1);
  return (
    <main>
      <h1>Admin console</h1>
      <p><button type="button" onClick={changed}>Refresh</button></p>
      <Users selfId={selfId} revision={revision} changed={changed} />
      <System revision={revision} />
      <Audit revision={revision} />
    </main>
  );
}
