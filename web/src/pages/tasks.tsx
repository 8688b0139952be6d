/** The task board: filters, search, sort and pages over `GET /tasks`; create, edit, complete and delete. */

import { useEffect, useRef, useState } from "preact/hooks";
import { call, Problem, request } from "../api";
import { Empty, ErrorMessage, Loading, Pager, useSettled, type Page } from "../components";
import { fromLocalInput, showDate, timeZone, toLocalInput } from "../format";

/** A task (DESIGN §4 tasks). */
export interface Task {
  id: string;
  title: string;
  description: string;
  status: "todo" | "in_progress" | "done";
  priority: "low" | "medium" | "high" | "urgent";
  due_date: string | null;
  tags: string[];
  completed_at: string | null;
  updated_at: string;
  version: number;
}

const STATUSES = { todo: "To do", in_progress: "In progress", done: "Done" } as const;
const PRIORITIES = { low: "Low", medium: "Medium", high: "High", urgent: "Urgent" } as const;
const SORTS = {
  "-created_at": "Newest first",
  created_at: "Oldest first",
  due_date: "Due soonest",
  "-priority": "Most urgent",
  title: "Title A–Z",
  "-updated_at": "Recently changed",
} as const;
const LIMIT = 10;
/** The task form's labels, for the fields of a refused task (`tags.0` is "Tag 1"). */
const FIELDS = { title: "Title", description: "Description", status: "Status", priority: "Priority", due_date: "Due date", tags: "Tags", "tags.*": "Tag" };

interface Filters {
  q: string;
  status: string;
  priority: string;
  tag: string;
  overdue: boolean;
  sort: string;
  page: number;
}

function query(filters: Filters): string {
  const params = new URLSearchParams({ page: String(filters.page), limit: String(LIMIT), sort: filters.sort });
  for (const name of ["q", "status", "priority", "tag"] as const) if (filters[name]) params.set(name, filters[name]);
  if (filters.overdue) params.set("overdue", "true");
  return params.toString();
}

function tagsOf(text: string): string[] {
  return text.split(",").map((tag) => tag.trim()).filter(Boolean);
}

/**
 * The fields of the create form, or of the edit form of `task`: then only those the user changed,
 * so a field left alone keeps its stored value exactly (a due date's seconds, or which of a
 * repeated hour it is, which the minute-precise local input cannot show).
 */
function fieldsOf(form: HTMLFormElement, task?: Task): Record<string, unknown> {
  const data = new FormData(form);
  const text = (name: string) => String(data.get(name) ?? "");
  const fields: Record<string, unknown> = {};
  const take = (name: string, value: unknown, shown: unknown, read: () => unknown = () => value) => {
    if (!task || JSON.stringify(value) !== JSON.stringify(shown)) fields[name] = read();
  };
  take("title", text("title"), task?.title);
  take("description", text("description"), task?.description);
  take("priority", text("priority"), task?.priority);
  take("due_date", text("due_date"), toLocalInput(task?.due_date), () => fromLocalInput(text("due_date")));
  take("tags", tagsOf(text("tags")), task?.tags);
  if (task) take("status", text("status"), task.status);
  return fields;
}

/** The fields of a task; `focus` puts the keyboard in the title once shown (the edit form
 * replaces the button that opened it, which would otherwise leave the focus nowhere). */
function TaskFields({ task, focus = false }: { task?: Task; focus?: boolean }) {
  const title = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (focus) title.current?.focus();
  }, [focus]);
  return (
    <>
      <label>Title<input ref={title} name="title" required maxLength={200} defaultValue={task?.title} /></label>
      <label>Description<textarea name="description" maxLength={5000} rows={2} defaultValue={task?.description} /></label>
      <div class="row">
        {task && (
          <label>Status
            <select name="status">
              {Object.entries(STATUSES).map(([value, label]) => <option value={value} selected={value === task.status}>{label}</option>)}
            </select>
          </label>
        )}
        <label>Priority
          <select name="priority">
            {Object.entries(PRIORITIES).map(([value, label]) => (
              <option value={value} selected={value === (task?.priority ?? "medium")}>{label}</option>
            ))}
          </select>
        </label>
        <label>Due date ({timeZone})
          <input name="due_date" type="datetime-local" defaultValue={toLocalInput(task?.due_date)} />
        </label>
        <label>Tags (comma-separated)<input name="tags" defaultValue={task?.tags.join(", ")} /></label>
      </div>
    </>
  );
}

/** Statuses after which a create may have been applied without its answer reaching us. */
const UNANSWERED = [0, 502, 503, 504];

/** A fresh Idempotency-Key: 128 random bits in hex (crypto.getRandomValues works outside secure contexts too). */
function newKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Create a task once: the request carries `key` as its Idempotency-Key, so the one retry after an
 * answer that never came (a network error, or the gateway's 502/503/504 when an instance died)
 * cannot make a second task; the server answers it with the task the first try made.
 */
async function createOnce(fields: Record<string, unknown>, key: string): Promise<Task> {
  const send = () => call<Task>("POST", "/tasks", fields, { "Idempotency-Key": key });
  try {
    return await send();
  } catch (problem) {
    if (!(problem instanceof Problem) || !UNANSWERED.includes(problem.status)) throw problem;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return send();
  }
}

function NewTask({ created }: { created: () => void }) {
  const [error, setError] = useState<unknown>(null);
  // A new form after each task (rather than form.reset(), which would put each select on its
  // first option: Preact sets `selected` as a property, not as the default reset returns to).
  const [form, setForm] = useState(0);
  const [added, setAdded] = useState("");
  // The key of the last create sent but not known to have succeeded: pressing "Add task" again
  // with the same fields (after an error) reuses it, so it cannot add the task twice.
  const unconfirmed = useRef<{ body: string; key: string } | null>(null);
  async function submit(event: Event) {
    event.preventDefault();
    const target = event.currentTarget as HTMLFormElement;
    setError(null);
    setAdded("");  // the last "Added …" is no news next to this try's outcome
    try {
      const fields = fieldsOf(target);  // throws the problem of a field it refuses (a time the clocks skip)
      const body = JSON.stringify(fields);
      if (unconfirmed.current?.body !== body) unconfirmed.current = { body, key: newKey() };
      const task = await createOnce(fields, unconfirmed.current.key);
      unconfirmed.current = null;
      setForm((number) => number + 1);
      setAdded(`Added “${task.title}”.`);
      created();
    } catch (problem) {
      setError(problem);
    }
  }
  return (
    <section aria-labelledby="new-task">
      <h2 id="new-task">New task</h2>
      <form key={form} onSubmit={submit}>
        <TaskFields focus={form > 0} />
        <ErrorMessage error={error} labels={FIELDS} />
        <button type="submit" class="primary">Add task</button>
        <span role="status">{added}</span>
      </form>
    </section>
  );
}

interface ItemProps {
  task: Task;
  /** The task changed or went here: the board reloads (held while a form is open). */
  changed: () => void;
  /** The task was deleted here: the board takes it out of the list at once. */
  deleted: (id: string) => void;
  /** The task's edit form opened (`true`) or closed. */
  editing: (id: string, open: boolean) => void;
}

function TaskItem({ task, changed, deleted, editing: onEditing }: ItemProps) {
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [conflict, setConflict] = useState(false);
  const [current, setCurrent] = useState(task);
  const editButton = useRef<HTMLButtonElement>(null);
  const refocus = useRef(false);
  useEffect(() => {
    if (!editing) setCurrent(task);
  }, [task, editing]);
  useEffect(() => {
    if (!editing) return;
    onEditing(task.id, true);
    return () => onEditing(task.id, false);
  }, [editing]);

  /** Close the edit form, the keyboard back on the Edit button that opened it. */
  function close() {
    setEditing(false);
    setError(null);
    refocus.current = true;
  }
  useEffect(() => {
    if (!editing && refocus.current) editButton.current?.focus();
    refocus.current = false;
  }, [editing]);

  /** PATCH the task with `fields` (read from the form when a function: a bad date is an error shown here). */
  async function change(fields: Record<string, unknown> | (() => Record<string, unknown>)) {
    setError(null);
    setConflict(false);
    try {
      const body = typeof fields === "function" ? fields() : fields;
      if (Object.keys(body).length === 0) {  // nothing changed: nothing to send
        close();
        return;
      }
      // Shown at once: while another task's form is open the board holds its reload.
      setCurrent(await call<Task>("PATCH", `/tasks/${current.id}`, body, { "If-Match": `"${current.version}"` }));
      if (editing) close();
      changed();
    } catch (problem) {
      if (problem instanceof Problem && problem.status === 412) setConflict(true);
      setError(problem);
    }
  }

  async function reload() {
    setError(null);
    setConflict(false);
    try {
      setCurrent(await (await request(`/tasks/${current.id}`)).json());
      close();
      changed();
    } catch (problem) {
      setError(problem);
    }
  }

  async function remove() {
    if (!window.confirm(`Delete “${current.title}”?`)) return;
    try {
      await request(`/tasks/${current.id}`, { method: "DELETE", headers: { "If-Match": `"${current.version}"` } });
      deleted(current.id);
    } catch (problem) {
      if (problem instanceof Problem && problem.status === 404) {
        deleted(current.id);  // deleted elsewhere meanwhile (or by a retry of this one): gone as asked
        return;
      }
      if (problem instanceof Problem && problem.status === 412) setConflict(true);
      setError(problem);
    }
  }

  const overdue = current.status !== "done" && current.due_date !== null && new Date(current.due_date) < new Date();
  return (
    <li class={`task ${current.status}`} tabIndex={-1} aria-labelledby={`task-${current.id}`}>
      {editing ? (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            const form = event.currentTarget as HTMLFormElement;
            void change(() => fieldsOf(form, current));
          }}
          onKeyDown={(event) => { if (event.key === "Escape") close(); }}
        >
          <TaskFields task={current} focus />
          <div class="row">
            <button type="submit" class="primary">Save task</button>
            <button type="button" onClick={close}>Cancel</button>
          </div>
        </form>
      ) : (
        <>
          <div class="task-main">
            <h3 id={`task-${current.id}`}>{current.title}</h3>
            {current.description && <p class="description">{current.description}</p>}
            <p class="meta">
              <span class={`badge ${current.status}`}>{STATUSES[current.status]}</span>
              <span class={`badge ${current.priority}`}>{PRIORITIES[current.priority]} priority</span>
              {current.due_date && (
                <span class={overdue ? "overdue" : ""}>Due {showDate(current.due_date)}{overdue ? " (overdue)" : ""}</span>
              )}
              {current.tags.map((tag) => <span class="tag">#{tag}</span>)}
            </p>
          </div>
          <div class="actions">
            {current.status !== "done" && (
              <button type="button" aria-label={`Complete ${current.title}`} onClick={() => void change({ status: "done" }).then(() => editButton.current?.focus())}>Complete</button>
            )}
            <button type="button" ref={editButton} aria-label={`Edit ${current.title}`} onClick={() => setEditing(true)}>Edit</button>
            <button type="button" class="danger" aria-label={`Delete ${current.title}`} onClick={() => void remove()}>Delete</button>
          </div>
        </>
      )}
      {conflict ? (  // said in the page's words, rather than the server's "fetch it again"
        <div class="error" role="alert">
          <p>
            Someone else changed this task since you opened it.{" "}
            <button type="button" onClick={() => void reload()}>Reload task</button>
          </p>
        </div>
      ) : <ErrorMessage error={error} labels={FIELDS} />}
    </li>
  );
}

/**
 * The board; `revision` changes when the live feed reports a task change.
 *
 * While a task's edit form is open the list is not reloaded (a reload may re-sort the rows or
 * page the task out, taking the form and what was typed with it): changes made elsewhere or here
 * are held, said so, and shown when the last form closes. A change of the filters, the user's own
 * request, reloads at once. A deleted task leaves the list at once, the keyboard on the row that
 * took its place (or the list's heading when none is left).
 */
export function Board({ revision, changed }: { revision: number; changed: () => void }) {
  const [filters, setFilters] = useState<Filters>({ q: "", status: "", priority: "", tag: "", overdue: false, sort: "-created_at", page: 1 });
  // The tag as typed: applied on Enter or leaving the field, and kept meanwhile through re-renders.
  const [tag, setTag] = useState("");
  // The search as typed, applied once the typing pauses.
  const [search, setSearch] = useState("");
  const searched = useSettled(search);
  // Open on a wide screen; on a phone closed, so the tasks are not a screenful below the form.
  const [showFilters, setShowFilters] = useState(() => matchMedia("(min-width: 40rem)").matches);
  const [page, setPage] = useState<Page<Task> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [local, setLocal] = useState(0);
  const [editing, setEditing] = useState<ReadonlySet<string>>(new Set());
  const [held, setHeld] = useState(false);
  /** The filters and the `revision:local` of the list shown. */
  const shown = useRef<{ filters: Filters | null; key: string }>({ filters: null, key: "" });
  /** After a delete: the task gone, and the row to put the keyboard on once a list without it shows
   * (by id; by position when that task left the page too). */
  const focusAfter = useRef<{ gone: string; next: string | null; index: number } | null>(null);
  /** The page shown, for a delete that answers after a reload replaced it. */
  const latest = useRef<Page<Task> | null>(null);
  latest.current = page;
  const list = useRef<HTMLUListElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const open = editing.size > 0;

  useEffect(() => {
    const key = `${revision}:${local}`;
    if (shown.current.filters === filters && (open || shown.current.key === key)) {
      setHeld(shown.current.key !== key);
      return;
    }
    let current = true;
    call<Page<Task>>("GET", `/tasks?${query(filters)}`)
      .then((answer) => {
        if (!current) return;
        const last = Math.max(1, Math.ceil(answer.total / answer.limit));
        if (answer.page > last) setFilters({ ...filters, page: last });  // its last task went
        else {
          shown.current = { filters, key };
          setPage(answer);
          setError(null);
          setHeld(false);
        }
      })
      .catch((problem) => { if (current) setError(problem); });
    return () => { current = false; };
  }, [filters, revision, local, open]);

  useEffect(() => {
    const pending = focusAfter.current;
    if (!pending || !page) return;
    if (page.items.some((task) => task.id === pending.gone)) return;  // a reload sent before the delete
    const rows = Array.from(list.current?.children ?? []) as HTMLElement[];
    const byId = rows.find((row) => row.getAttribute("aria-labelledby") === `task-${pending.next}`);
    (byId ?? rows[Math.min(pending.index, rows.length - 1)] ?? heading.current)?.focus();
    focusAfter.current = null;
  }, [page]);

  const applied = [filters.status, filters.priority, filters.tag, filters.overdue].filter(Boolean).length;
  const set = (patch: Partial<Filters>) => setFilters({ ...filters, page: 1, ...patch });
  useEffect(() => { if (searched !== filters.q) set({ q: searched }); }, [searched]);
  const refresh = () => { setLocal((number) => number + 1); changed(); };
  const formOpen = (id: string, isOpen: boolean) => setEditing((ids) => {
    const next = new Set(ids);
    if (isOpen) next.add(id);
    else next.delete(id);
    return next;
  });
  const deleted = (id: string) => {
    const shownPage = latest.current;
    if (shownPage) {
      const index = Math.max(0, shownPage.items.findIndex((task) => task.id === id));
      const next = shownPage.items[index + 1] ?? shownPage.items[index - 1];
      focusAfter.current = { gone: id, next: next?.id ?? null, index };
      if (shownPage.items.some((task) => task.id === id)) {
        setPage({ ...shownPage, items: shownPage.items.filter((task) => task.id !== id), total: shownPage.total - 1 });
      }
    }
    refresh();
  };

  return (
    <main>
      <h1>Tasks</h1>
      <NewTask created={refresh} />
      <section aria-labelledby="your-tasks">
        <h2 id="your-tasks" ref={heading} tabIndex={-1}>Your tasks</h2>
        <form class="board-search" role="search" onSubmit={(event) => event.preventDefault()}>
          <label>Search<input type="search" value={search} onInput={(event) => setSearch(event.currentTarget.value)} /></label>
          <details open={showFilters} onToggle={(event) => setShowFilters(event.currentTarget.open)}>
            <summary>Filters and sort{applied ? ` (${applied} applied)` : ""}</summary>
            <div class="filters">
              <label>Filter by status
                <select value={filters.status} onChange={(event) => set({ status: event.currentTarget.value })}>
                  <option value="">Any status</option>
                  {Object.entries(STATUSES).map(([value, label]) => <option value={value}>{label}</option>)}
                </select>
              </label>
              <label>Filter by priority
                <select value={filters.priority} onChange={(event) => set({ priority: event.currentTarget.value })}>
                  <option value="">Any priority</option>
                  {Object.entries(PRIORITIES).map(([value, label]) => <option value={value}>{label}</option>)}
                </select>
              </label>
              <label>Filter by tag
                <input value={tag} onInput={(event) => setTag(event.currentTarget.value)}
                       onChange={(event) => set({ tag: event.currentTarget.value.trim().replace(/^#/, "").toLowerCase() })} />
              </label>
              <label>Sort by
                <select value={filters.sort} onChange={(event) => set({ sort: event.currentTarget.value })}>
                  {Object.entries(SORTS).map(([value, label]) => <option value={value}>{label}</option>)}
                </select>
              </label>
              <label class="check"><input type="checkbox" checked={filters.overdue} onChange={(event) => set({ overdue: event.currentTarget.checked })} />Overdue only</label>
            </div>
          </details>
        </form>
        <ErrorMessage error={error} />
        <p role="status" class="muted">{held ? "Tasks changed while you edit: the list updates when you close the form." : ""}</p>
        {!page && !error && <Loading what="tasks" />}
        {page && page.total === 0 && <Empty>No tasks match. Add one above{filters.q || filters.status || filters.priority || filters.tag || filters.overdue ? " or change the filters" : ""}.</Empty>}
        {page && page.total > 0 && (
          <>
            <ul class="tasks" aria-label="Tasks" ref={list}>
              {page.items.map((task) => <TaskItem key={task.id} task={task} changed={refresh} deleted={deleted} editing={formOpen} />)}
            </ul>
            <Pager page={page.page} limit={page.limit} total={page.total} go={(number) => setFilters({ ...filters, page: number })} />
          </>
        )}
      </section>
    </main>
  );
}
