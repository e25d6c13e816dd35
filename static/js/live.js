// live.js follows a database's change feed in the browser: an EventSource
// on GET /api/databases/{db}/changes?feed=sse. An EventSource cannot send
// Authorization, so each connection brings a stream ticket asked for with
// the session's credential (POST .../changes/ticket, good once); after a
// dropped connection (or a "lagging" end) it asks for a new ticket and
// resumes after the last event received. A server without the feed (S3
// storage, an older server) or a credential that may not read it gives
// no live updates and no error.

import { request } from "./api.js";

const RETRY_MIN = 1000;
const RETRY_MAX = 30000;

/**
 * followChanges calls onChange({seq, key, op, etag, at}) for every change
 * of db from now on, until close() (call it when the page goes). Returns
 * {close}.
 */
export function followChanges(db, onChange) {
  let since = "now";
  let es = null;
  let timer = 0;
  let closed = false;
  let delay = RETRY_MIN;

  const reconnect = () => {
    if (es) es.close();
    es = null;
    if (closed) return;
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, RETRY_MAX);
  };

  async function connect() {
    timer = 0;
    let r;
    try {
      r = await request("POST", `/api/databases/${encodeURIComponent(db)}/changes/ticket`);
    } catch {
      return reconnect(); // network: try again later (a 401 has logged out)
    }
    if (closed) return;
    if (!r.ok || !r.data || typeof r.data.ticket !== "string") {
      if (r.status >= 500 || r.status === 429) reconnect();
      return; // no feed for this database and credential
    }
    const q = new URLSearchParams({ feed: "sse", since, ticket: r.data.ticket });
    es = new EventSource(`/api/databases/${encodeURIComponent(db)}/changes?${q}`);
    es.addEventListener("open", () => {
      delay = RETRY_MIN;
    });
    es.addEventListener("change", (ev) => {
      if (ev.lastEventId) since = ev.lastEventId;
      let c;
      try {
        c = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (c && typeof c.key === "string") onChange(c);
    });
    const resume = (ev) => {
      try {
        const d = JSON.parse(ev.data);
        if (d && d.resume_from) since = String(d.resume_from);
      } catch {
        // no body: resume after the last event
      }
      reconnect();
    };
    es.addEventListener("lagging", resume);
    es.addEventListener("deleted", () => {
      closed = true;
      es.close();
    });
    // The server's "error" event carries resume_from; the browser's own
    // (a dropped connection) has no data. Either way, a new ticket: the
    // browser's own retry would bring the spent one.
    es.addEventListener("error", (ev) => (ev.data ? resume(ev) : reconnect()));
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (es) es.close();
      es = null;
    },
  };
}
