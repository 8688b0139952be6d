/** Dates as people read and type them: in the browser's own time zone, sent to the API in UTC. */

import { Problem } from "./api";

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** An RFC 3339 instant from the API shown in the user's time zone; "" for none. */
export function showDate(iso: string | null | undefined): string {
  return iso ? dateTime.format(new Date(iso)) : "";
}

/** The value of an `<input type="datetime-local">` (local wall time) for an RFC 3339 instant. */
export function toLocalInput(iso: string | null | undefined): string {
  if (!iso) return "";
  const date = new Date(iso);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/**
 * The RFC 3339 instant (UTC, `Z`) of a `datetime-local` value read in the user's time zone; null
 * for "". Throws a 422 {@link Problem} for a wall time the zone skips (the hour the clocks go
 * forward), which the browser would otherwise quietly move by an hour.
 */
export function fromLocalInput(value: string, field = "due_date"): string | null {
  if (!value) return null;
  const instant = new Date(value).toISOString();
  if (toLocalInput(instant) !== value.slice(0, 16)) {
    const message = `${value.replace("T", " ")} does not exist in ${timeZone} (the clocks skip it): choose another time.`;
    throw new Problem(422, "Validation failed", "", [{ field, message }]);
  }
  return instant;
}

/** The user's time zone's name, shown beside date fields. */
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
