/**
 * The live feed: `GET /api/v1/notifications/stream` (Server-Sent Events, DESIGN §4 notify), read
 * with `fetch` so that it carries the bearer token (EventSource cannot send headers). When the
 * stream ends (the token's expiry, a network error, a restart) it is opened again with
 * `Last-Event-ID`, so the server resends what came after the last event seen; an event seen
 * twice (the server may resend a few around the reconnection point) is delivered once. A stream
 * the server ends after a good run (every 5 minutes) is resumed at once without reporting a
 * disconnection, so the status a screen reader announces changes only when the feed is away.
 */

import { Problem, request } from "./api";

/** One event of the feed: `notification` (an inbox item) or `task` (a change of one of the user's tasks). */
export interface FeedEvent {
  id: string;
  type: "notification" | "task";
  data: any;
}

const SEEN_LIMIT = 500;
const RETRY_MAX_MS = 10_000;
/** A stream that lasted this long ended normally: it is resumed at once, still "connected". */
const GOOD_RUN_MS = 5_000;

/** Parse the `text/event-stream` blocks of `chunk`; the unfinished tail is returned to keep. */
export function parseEvents(buffer: string): { events: { id?: string; event: string; data: string }[]; rest: string } {
  const events: { id?: string; event: string; data: string }[] = [];
  const blocks = buffer.replace(/\r\n?/g, "\n").split("\n\n");
  const rest = blocks.pop() ?? "";
  for (const block of blocks) {
    let event = "message";
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (data.length) events.push({ id, event, data: data.join("\n") });
  }
  return { events, rest };
}

/**
 * Follow the feed until `signal` aborts, calling `deliver` once per event and `status` with
 * whether the stream is connected.
 */
export async function follow(
  deliver: (event: FeedEvent) => void,
  status: (connected: boolean) => void,
  signal: AbortSignal,
): Promise<void> {
  let lastId = "";
  const seen: string[] = [];
  let retryMs = 500;
  while (!signal.aborted) {
    let opened = 0;
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await request("/notifications/stream", { headers, signal });
      opened = Date.now();
      status(true);
      retryMs = 500;
      const reader = (response.body as ReadableStream<BufferSource>).pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const parsed = parseEvents(buffer + value);
        buffer = parsed.rest;
        for (const event of parsed.events) {
          if (!event.id || (event.event !== "notification" && event.event !== "task")) continue;
          lastId = event.id;
          if (seen.includes(event.id)) continue;
          seen.push(event.id);
          if (seen.length > SEEN_LIMIT) seen.shift();
          deliver({ id: event.id, type: event.event, data: JSON.parse(event.data) });
        }
      }
      if (Date.now() - opened >= GOOD_RUN_MS) continue;
    } catch (error) {
      if (signal.aborted) return;
      // A refused token signs the page out (api.request announces it); nothing left to follow.
      if (error instanceof Problem && (error.status === 401 || error.status === 403)) return;
    }
    status(false);
    if (signal.aborted) return;
    await new Promise((resolve) => setTimeout(resolve, retryMs));
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}
