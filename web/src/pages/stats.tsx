/** The statistics of `GET /tasks/stats` as a small bar chart (SVG, with the figures as text too). */

import { useEffect, useState } from "preact/hooks";
import { call } from "../api";
import { ErrorMessage, Loading } from "../components";

interface Stats {
  total: number;
  by_status: { todo: number; in_progress: number; done: number };
  by_priority: { low: number; medium: number; high: number; urgent: number };
  overdue: number;
  completed_last_7_days: number;
}

/** Horizontal bars, one per `[label, value]`; the labelled figures are the accessible content. */
export function BarChart({ title, bars }: { title: string; bars: [string, number][] }) {
  const max = Math.max(1, ...bars.map(([, value]) => value));
  const height = bars.length * 28;
  return (
    <figure>
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 300 ${height}`} width="100%" role="img"
           aria-label={`${title}: ${bars.map(([label, value]) => `${label} ${value}`).join(", ")}`}>
        {bars.map(([label, value], index) => (
          <g transform={`translate(0 ${index * 28})`}>
            <text x="0" y="17" class="chart-label">{label}</text>
            <rect x="100" y="4" height="18" width={Math.max(2, (value / max) * 160)} class="chart-bar" />
            <text x={106 + (value / max) * 160} y="17" class="chart-value">{value}</text>
          </g>
        ))}
      </svg>
    </figure>
  );
}

export function StatsPage({ revision }: { revision: number }) {
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    call<Stats>("GET", "/tasks/stats").then((answer) => { setStats(answer); setError(null); }, setError);
  }, [revision]);
  return (
    <main>
      <h1>Statistics</h1>
      <ErrorMessage error={error} />
      {!stats && !error && <Loading what="statistics" />}
      {stats && (
        <>
          <dl class="figures">
            <div><dt>Tasks</dt><dd data-testid="stat-total">{stats.total}</dd></div>
            <div><dt>Done</dt><dd data-testid="stat-done">{stats.by_status.done}</dd></div>
            <div><dt>Overdue</dt><dd>{stats.overdue}</dd></div>
            <div><dt>Completed in the last 7 days</dt><dd>{stats.completed_last_7_days}</dd></div>
          </dl>
          <div class="charts">
            <BarChart title="Tasks by status" bars={[["To do", stats.by_status.todo], ["In progress", stats.by_status.in_progress], ["Done", stats.by_status.done]]} />
            <BarChart title="Tasks by priority" bars={[["Low", stats.by_priority.low], ["Medium", stats.by_priority.medium], ["High", stats.by_priority.high], ["Urgent", stats.by_priority.urgent]]} />
          </div>
        </>
      )}
    </main>
  );
}
