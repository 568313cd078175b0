/* PetPro clinic dashboard — plain JS, no build step, no third-party code.
 *
 * Session: POST /v1/auth/login gives an access token (kept in sessionStorage, so it dies with the tab)
 * and a refresh token (used before the access token expires).  GET /clinic/api/me (Bearer) returns the
 * user's clinics and sets the HttpOnly cookie that authenticates the live stream — EventSource cannot
 * send an Authorization header.
 *
 * Live feed: EventSource on /clinic/api/feed?clinic_id=…  Events carry `id: <cursor>`; on a network
 * drop the browser reconnects by itself with Last-Event-ID.  When the stream is refused (401/403/503)
 * the browser gives up, so this script renews the session and opens a new one with after_cursor.
 *
 * Schedule: the chosen day's bookings from GET /v1/clinics/{clinic_id}/bookings (Bearer; the
 * clinic-scoped REST API, membership checked by booking_svc), reloaded when the feed brings a booking
 * of that day (a new one, or a change: a move reloads both its old and its new day).  A clinic that
 * schedules by providers and rooms sees the day as one column per provider (the clinic's providers from
 * GET /v1/clinics/{clinic_id}/providers, plus any a booking names) and a row of rooms and equipment,
 * each with the bookings that use it; bookings to be paid at the clinic are marked as such.
 */
(() => {
  "use strict";

  const KEYS = { access: "petpro.clinic.access_token", refresh: "petpro.clinic.refresh_token",
                 expires: "petpro.clinic.expires_at", clinic: "petpro.clinic.clinic_id" };
  const FRESH_MS = 10000;        // how long a live booking stays highlighted
  const SETTLE_MS = 700;         // quiet time after which the initial replay counts as done
  const $ = (id) => document.getElementById(id);

  const state = {
    me: null,
    clinic: null,               // {clinic_id, name, time_zone}
    bookings: new Map(),        // booking_id -> {event, freshAt}
    lastCursor: 0,
    source: null,
    synced: false,              // initial replay finished (until then: "Loading bookings…")
    skew: 0,                    // server clock − this browser's clock, ms (from /clinic/api/me)
    since: 0,                   // server time when this clinic was opened: later bookings are "new"
    settleTimer: 0,
    reconnectTimer: 0,
    reconnectDelay: 1000,
    refreshTimer: 0,
    startTimer: 0,
    renderQueued: false,
    scheduleDay: "",            // YYYY-MM-DD in the clinic's zone
    scheduleSeq: 0,             // answers of superseded loads are dropped
    scheduleTimer: 0,
  };

  // ---------------------------------------------------------------------------------------------
  // session
  // ---------------------------------------------------------------------------------------------

  const store = {
    get access() { return sessionStorage.getItem(KEYS.access) || ""; },
    get refresh() { return sessionStorage.getItem(KEYS.refresh) || ""; },
    save(body) {
      sessionStorage.setItem(KEYS.access, body.access_token);
      if (body.refresh_token) sessionStorage.setItem(KEYS.refresh, body.refresh_token);
      const ttl = Number(body.expires_in) || 900;
      sessionStorage.setItem(KEYS.expires, String(Date.now() + ttl * 1000));
      scheduleRefresh();
    },
    clear() { for (const k of [KEYS.access, KEYS.refresh, KEYS.expires]) sessionStorage.removeItem(k); },
  };

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    const expires = Number(sessionStorage.getItem(KEYS.expires)) || 0;
    if (!expires || !store.refresh) return;
    const wait = Math.max(5000, (expires - Date.now()) * 0.8);
    state.refreshTimer = setTimeout(async () => {
      if (await refreshTokens()) await loadMe();   // renews the feed cookie with the new token
    }, wait);
  }

  async function refreshTokens() {
    if (!store.refresh) return false;
    try {
      const r = await fetch("/v1/auth/refresh", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: store.refresh }),
      });
      if (!r.ok) { if (r.status < 500) store.clear(); return false; }
      store.save(await r.json());
      return true;
    } catch { return false; }
  }

  /** GET /clinic/api/me (renews the token once on 401): the body, or SIGNED_OUT (the login form
   *  says why) or RETRY (a transient failure, shown on the board). */
  const SIGNED_OUT = "signed-out";
  const RETRY = "retry";
  async function loadMe() {
    const call = () => fetch("/clinic/api/me", { headers: { Authorization: `Bearer ${store.access}` },
                                                  credentials: "same-origin", cache: "no-store" });
    let r;
    let sentAt = Date.now();
    try {
      r = await call();
      if (r.status === 401 && await refreshTokens()) { sentAt = Date.now(); r = await call(); }
    } catch {
      showBoardMessage("The dashboard cannot reach the server. Retrying…");
      return RETRY;
    }
    if (r.status === 401) {
      store.clear();
      signedOut("Your session has ended. Please sign in again.");
      return SIGNED_OUT;
    }
    if (r.status === 403) {
      store.clear();
      signedOut("This account is not a clinic staff account.");
      return SIGNED_OUT;
    }
    if (!r.ok) {
      showBoardMessage(`The dashboard is unavailable right now (${r.status}). Retrying…`);
      return RETRY;
    }
    state.me = await r.json();
    const serverTime = Date.parse(state.me.server_time);
    if (!Number.isNaN(serverTime)) state.skew = serverTime - (sentAt + Date.now()) / 2;
    return state.me;
  }

  async function login(event) {
    event.preventDefault();
    const email = $("email").value.trim();
    const password = $("password").value;
    if (!email || !password) { showLoginMessage("Enter your email and password."); return; }
    const button = $("login-submit");
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const r = await fetch("/v1/auth/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email, password }),
      });
      if (r.status === 401) { showLoginMessage("Incorrect email or password."); return; }
      if (r.status === 400) { showLoginMessage("Enter a valid email address and your password."); return; }
      if (r.status === 429) { showLoginMessage("Too many attempts. Wait a moment and try again."); return; }
      if (!r.ok) { showLoginMessage(`Sign-in is unavailable right now (${r.status}). Please try again.`); return; }
      store.save(await r.json());
      $("password").value = "";
      await start();
    } catch {
      showLoginMessage("The server cannot be reached. Check your connection and try again.");
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  }

  async function logout() {
    const refresh = store.refresh;
    const access = store.access;
    stopFeed();
    store.clear();
    sessionStorage.removeItem(KEYS.clinic);
    try {
      await fetch("/clinic/api/logout", {
        method: "POST", credentials: "same-origin",
        headers: { Authorization: `Bearer ${access}`, "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: refresh }),
      });
    } catch { /* signed out locally anyway */ }
    signedOut("You have signed out.", "info");
  }

  // ---------------------------------------------------------------------------------------------
  // views
  // ---------------------------------------------------------------------------------------------

  function show(view) {
    $("loading").hidden = true;
    $("login-view").hidden = view !== "login";
    $("board-view").hidden = view !== "board";
    $("session").hidden = view !== "board";
  }

  function signedOut(message, kind) {
    stopFeed();
    clearTimeout(state.refreshTimer);
    clearTimeout(state.startTimer);
    state.me = null;
    state.clinic = null;               // nothing of the previous session stays in the page
    state.bookings.clear();
    state.lastCursor = 0;
    $("days").replaceChildren();
    show("login");
    if (message) showLoginMessage(message, kind); else $("login-message").hidden = true;
    $("email").focus();
  }

  function showLoginMessage(text, kind) {
    const el = $("login-message");
    el.textContent = text;
    el.classList.toggle("alert-info", kind === "info");
    el.hidden = false;
  }

  function showBoardMessage(text) {
    const el = $("board-message");
    el.textContent = text || "";
    el.hidden = !text;
  }

  async function start() {
    clearTimeout(state.startTimer);
    const me = await loadMe();
    if (me === SIGNED_OUT) return;
    if (me === RETRY) {
      if (!$("board-view").hidden) { scheduleReconnect(); return; }
      show("login");
      showLoginMessage("The dashboard is unavailable right now. Retrying…", "info");
      state.startTimer = setTimeout(start, 3000);
      return;
    }
    $("login-message").hidden = true;
    showBoardMessage("");
    $("who").textContent = me.name || me.email;
    const wanted = state.clinic?.clinic_id || sessionStorage.getItem(KEYS.clinic);
    const clinic = me.clinics.find((c) => c.clinic_id === wanted) || me.clinics[0];
    if (!clinic) {
      signedOut("No clinic is linked to this account.");
      return;
    }
    fillPicker(me.clinics, clinic.clinic_id);
    show("board");
    selectClinic(clinic);
    scheduleRefresh();
  }

  function fillPicker(clinics, selected) {
    const select = $("clinic-select");
    select.replaceChildren(...clinics.map((c) => {
      const option = new Option(c.name, c.clinic_id);
      option.selected = c.clinic_id === selected;
      return option;
    }));
    $("clinic-picker").hidden = clinics.length < 2;
  }

  function selectClinic(clinic) {
    const changed = state.clinic?.clinic_id !== clinic.clinic_id;
    state.clinic = clinic;
    sessionStorage.setItem(KEYS.clinic, clinic.clinic_id);
    $("clinic-name").textContent = clinic.name;
    document.title = `${clinic.name} · Clinic dashboard · PetPro`;
    if (changed) {
      state.bookings.clear();
      state.lastCursor = 0;
      state.synced = false;
      state.since = Date.now() + state.skew;
      render();
    }
    if (changed || !state.scheduleDay) {
      state.scheduleDay = dayKey(new Date(Date.now() + state.skew));
      $("schedule-date").value = state.scheduleDay;
    }
    loadSchedule();
    connect();
  }

  // ---------------------------------------------------------------------------------------------
  // the day's schedule
  // ---------------------------------------------------------------------------------------------

  /** Bookings starting on state.scheduleDay (clinic time): a UTC window around the day, filtered by
   * the clinic-zone day of each start, all pages. */
  async function loadSchedule() {
    const clinic = state.clinic;
    const day = state.scheduleDay;
    if (!clinic || !day) return;
    const seq = ++state.scheduleSeq;
    const [y, m, d] = day.split("-").map(Number);
    const from = new Date(Date.UTC(y, m - 1, d - 1)).toISOString();
    const to = new Date(Date.UTC(y, m - 1, d + 2)).toISOString();
    $("schedule-status").textContent = "Loading the schedule…";
    const rows = [];
    let token = "";
    for (let page = 0; page < 20; page++) {
      const q = new URLSearchParams({ start_time: from, end_time: to, page_size: "100" });
      if (token) q.set("page_token", token);
      const url = `/v1/clinics/${encodeURIComponent(clinic.clinic_id)}/bookings?${q}`;
      let r = await fetch(url, { headers: { Authorization: `Bearer ${store.access}` } }).catch(() => null);
      if (r && r.status === 401 && await refreshTokens()) {
        r = await fetch(url, { headers: { Authorization: `Bearer ${store.access}` } }).catch(() => null);
      }
      if (seq !== state.scheduleSeq) return;
      if (!r || !r.ok) {
        $("schedule-status").textContent = "The schedule could not be loaded. It reloads with the next booking.";
        return;
      }
      const body = await r.json();
      rows.push(...(body.bookings || []));
      token = body.next_page_token || "";
      if (!token) break;
    }
    if (seq !== state.scheduleSeq) return;
    const [providers, resources] = await Promise.all([
      loadList(clinic, "providers"), loadList(clinic, "resources")]);
    if (seq !== state.scheduleSeq) return;
    const shown = rows.filter((x) => dayKey(new Date(x.booking.slot_start_time)) === day);
    renderSchedule(shown);
    renderBoard(shown, providers, resources);
  }

  /** The clinic's providers or resources (not archived), in the API's order; [] when it has none (or
   * the list is unavailable: the board then shows the ones the bookings name). */
  async function loadList(clinic, kind) {
    const url = `/v1/clinics/${encodeURIComponent(clinic.clinic_id)}/${kind}?page_size=100`;
    const r = await fetch(url, { headers: { Authorization: `Bearer ${store.access}` } }).catch(() => null);
    if (!r || !r.ok) return [];
    const body = await r.json().catch(() => ({}));
    return (body[kind] || []).filter((p) => !p.archived && !p.archive_time);
  }

  /** One column per provider and a row of rooms/equipment, each listing the day's live bookings that
   * use it (cancelled ones are left out); hidden for a clinic without providers or resources. */
  function renderBoard(rows, providers, resources) {
    const live = rows.filter((x) => x.booking.state !== "BOOKING_STATE_CANCELLED");
    const columns = new Map(providers.map((p) => [p.provider_id, { name: p.display_name, items: [] }]));
    const rooms = new Map(resources.map((r) => [r.resource_id,
      { name: r.display_name, type: r.resource_type || "", items: [] }]));
    const unassigned = [];
    for (const x of live) {
      const b = x.booking;
      const p = b.provider && b.provider.provider_id;
      if (p) {
        if (!columns.has(p)) columns.set(p, { name: "", items: [] });
        const col = columns.get(p);
        col.name = col.name || b.provider.display_name || fedName(b.booking_id, "provider", p) || "Provider";
        col.items.push(x);
      } else {
        unassigned.push(x);
      }
      for (const r of b.resources || []) {
        if (!rooms.has(r.resource_id)) rooms.set(r.resource_id, { name: "", type: "", items: [] });
        const room = rooms.get(r.resource_id);
        room.name = room.name || r.display_name || fedName(b.booking_id, "resource", r.resource_id) || "Room";
        room.type = room.type || r.resource_type || "";
        room.items.push(x);
      }
    }
    const board = $("schedule-board");
    board.hidden = columns.size === 0 && rooms.size === 0;
    if (board.hidden) return;
    if (unassigned.length) columns.set("", { name: "No provider", items: unassigned });
    $("provider-columns").replaceChildren(...[...columns].map(([id, c]) => {
      const col = el("section", "provider-column");
      col.setAttribute("role", "listitem");
      col.dataset.providerId = id;
      col.append(el("h3", "", c.name));
      col.append(...c.items.map((x) => slotCard(x, true)));
      if (!c.items.length) col.append(el("p", "muted", "Free all day"));
      return col;
    }));
    $("resource-row").replaceChildren(...[...rooms].map(([id, r]) => {
      const cell = el("section", "resource-cell");
      cell.setAttribute("role", "listitem");
      cell.dataset.resourceId = id;
      cell.append(el("h3", "", r.type ? `${r.name} · ${r.type}` : r.name));
      cell.append(...r.items.map((x) => slotCard(x, false)));
      if (!r.items.length) cell.append(el("p", "muted", "Free all day"));
      return cell;
    }));
  }

  /** A provider's or resource's name as the feed's event of that booking carries it. */
  function fedName(bookingId, kind, id) {
    const known = state.bookings.get(bookingId);
    const b = known && known.event.booking;
    if (!b) return "";
    if (kind === "provider") return (b.provider && b.provider.provider_id === id && b.provider.display_name) || "";
    const r = (b.resources || []).find((x) => x.resource_id === id);
    return (r && r.display_name) || "";
  }

  function slotCard(x, full) {
    const b = x.booking;
    const card = el("article", "slot-card");
    card.dataset.bookingId = b.booking_id;
    card.append(el("p", "slot-time", `${timeOf(b.slot_start_time)}–${timeOf(b.slot_end_time)}`));
    if (full) {
      card.append(el("p", "", `${x.pet_name} · ${x.service_name}`));
      card.append(el("p", "muted", x.owner_name || x.owner_email));
    } else {
      card.append(el("p", "", x.pet_name));
    }
    if (b.pay_at_clinic) card.append(el("span", "badge badge-unpaid", "Pay at clinic"));
    return card;
  }

  const STATES = { BOOKING_STATE_CONFIRMED: "Confirmed", BOOKING_STATE_CANCELLED: "Cancelled" };

  function renderSchedule(rows) {
    const label = fmt("day", { weekday: "long", day: "numeric", month: "long" })
      .format(new Date(`${state.scheduleDay}T12:00:00Z`));
    const body = $("schedule-rows");
    body.replaceChildren(...rows.map((x) => {
      const b = x.booking;
      const tr = el("tr");
      tr.dataset.bookingId = b.booking_id;
      tr.dataset.state = b.state;
      tr.append(el("td", "", `${timeOf(b.slot_start_time)}–${timeOf(b.slot_end_time)}`));
      const kind = species(x.pet_species);
      tr.append(el("td", "", kind ? `${x.pet_name} (${kind})` : x.pet_name));
      const owner = el("td", "", x.owner_name || "");
      const mail = el("a", "contact", x.owner_email);
      mail.href = `mailto:${x.owner_email}`;
      owner.append(mail);
      tr.append(owner);
      tr.append(el("td", "", x.service_name));
      const st = el("td", "", STATES[b.state] || String(b.state).replace(/^BOOKING_STATE_/, "").toLowerCase());
      if (b.pay_at_clinic) st.append(el("span", "badge badge-unpaid", "Pay at clinic"));
      tr.append(st);
      return tr;
    }));
    $("schedule-table").hidden = rows.length === 0;
    $("schedule-status").textContent = rows.length
      ? `${rows.length} booking${rows.length === 1 ? "" : "s"} on ${label}.`
      : `No bookings on ${label}.`;
  }

  /** A booking arrived on the feed: reload the schedule if it is on the day shown (debounced). */
  function scheduleTouched(b) {
    const days = [b.slot_start_time, b.previous_start_time].filter(Boolean).map((t) => dayKey(new Date(t)));
    if (!state.scheduleDay || !days.includes(state.scheduleDay)) return;
    clearTimeout(state.scheduleTimer);
    state.scheduleTimer = setTimeout(loadSchedule, 150);
  }

  // ---------------------------------------------------------------------------------------------
  // live feed
  // ---------------------------------------------------------------------------------------------

  function setLive(status, text) {
    const el = $("live");
    if (el.dataset.state === status && $("live-text").textContent === text) return;
    el.dataset.state = status;
    $("live-text").textContent = text;
  }

  function stopFeed() {
    clearTimeout(state.reconnectTimer);
    clearTimeout(state.settleTimer);
    if (state.source) state.source.close();
    state.source = null;
  }

  function connect() {
    stopFeed();
    const clinicId = state.clinic.clinic_id;
    const url = `/clinic/api/feed?clinic_id=${encodeURIComponent(clinicId)}&after_cursor=${state.lastCursor}`;
    const source = new EventSource(url, { withCredentials: true });
    state.source = source;
    setLive("connecting", state.synced ? "Reconnecting…" : "Connecting…");

    source.addEventListener("open", () => {
      state.reconnectDelay = 1000;
      setLive("live", "Live");
      settleSoon();
    });
    for (const name of ["booking.cancelled", "booking.rescheduled", "booking.completed", "booking.no_show"]) {
      source.addEventListener(name, onChange);
    }
    source.addEventListener("booking.created", (e) => {
      if (source !== state.source) return;
      onBooking(e);
    });
    source.addEventListener("feed.status", (e) => {
      const s = JSON.parse(e.data).state;
      if (s === "live") setLive("live", "Live");
      else setLive("reconnecting", "Reconnecting…");
    });
    source.addEventListener("feed.closed", () => {
      // notif refused the stream (e.g. the session was revoked): check the session, then retry
      source.close();
      setLive("reconnecting", "Reconnecting…");
      scheduleReconnect();
    });
    source.addEventListener("error", () => {
      if (source !== state.source) return;
      setLive("reconnecting", "Reconnecting…");
      if (source.readyState === EventSource.CLOSED) scheduleReconnect();
      // else: the browser reconnects by itself and resumes with Last-Event-ID
    });
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, 30000);
    state.reconnectTimer = setTimeout(async () => {
      const me = await loadMe();                // renews the feed cookie (and the token if needed)
      if (me === SIGNED_OUT) return;
      if (me === RETRY) {
        setLive("offline", "Offline — retrying");
        scheduleReconnect();
        return;
      }
      showBoardMessage("");
      fillPicker(me.clinics, state.clinic?.clinic_id);
      const clinic = me.clinics.find((c) => c.clinic_id === state.clinic?.clinic_id);
      if (!clinic) { start(); return; }
      connect();
    }, delay);
  }

  function settleSoon() {
    if (state.synced) return;
    clearTimeout(state.settleTimer);
    state.settleTimer = setTimeout(() => { state.synced = true; queueRender(); }, SETTLE_MS);
  }

  function onBooking(e) {
    const event = JSON.parse(e.data);
    const cursor = Number(e.lastEventId || event.cursor);
    if (cursor > state.lastCursor) state.lastCursor = cursor;
    settleSoon();
    const b = event.booking;
    if (!b || !b.booking_id || state.bookings.has(b.booking_id)) return;
    if (state.synced || Date.parse(event.occurred_at) >= state.since) scheduleTouched(b);
    // new = confirmed after this clinic was opened here (the replay brings the older ones)
    const occurred = Date.parse(event.occurred_at);
    const fresh = Number.isNaN(occurred) ? state.synced : occurred >= state.since;
    state.bookings.set(b.booking_id, { event, freshAt: fresh ? Date.now() : 0 });
    if (fresh && isShown(b)) {
      announce(`New booking: ${b.service_name} for ${b.pet_name} on ${dayHeading(b.slot_start_time)} at ${timeOf(b.slot_start_time)}.`);
      setTimeout(queueRender, FRESH_MS + 50);
    }
    queueRender();
  }

  // a later change of a booking (feed events carry the booking's version: apply only a newer one)
  function onChange(e) {
    const event = JSON.parse(e.data);
    const cursor = Number(e.lastEventId || event.cursor);
    if (cursor > state.lastCursor) state.lastCursor = cursor;
    settleSoon();
    const b = event.booking;
    if (!b || !b.booking_id) return;
    const known = state.bookings.get(b.booking_id);
    if (known && Number(known.event.booking.version || 1) >= Number(b.version || 0)) return;
    const merged = known ? { ...known.event, booking: { ...known.event.booking, ...b, amount: known.event.booking.amount } }
      : event;
    state.bookings.set(b.booking_id, { event: merged, freshAt: known ? known.freshAt : 0 });
    if (state.synced || Date.parse(event.occurred_at) >= state.since) scheduleTouched(b);
    if (state.synced && isShown(merged.booking)) {
      announce(`Booking ${reference(b.booking_id)} ${STATE_WORDS[b.state] || "changed"}.`);
    }
    queueRender();
  }

  const STATE_WORDS = { BOOKING_STATE_CANCELLED: "cancelled", BOOKING_STATE_COMPLETED: "completed",
                        BOOKING_STATE_NO_SHOW: "no-show", BOOKING_STATE_CONFIRMED: "moved" };

  // staff actions: the REST routes of MobileService, with the session's bearer token
  async function act(b, action, body) {
    const url = `/v1/clinics/${encodeURIComponent(state.clinic.clinic_id)}/bookings/${encodeURIComponent(b.booking_id)}:${action}`;
    const r = await fetch(url, { method: "POST", headers: { "Authorization": `Bearer ${store.access}`,
      "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() }, body: JSON.stringify(body || {}) });
    if (!r.ok) {
      let detail = `${r.status}`;
      try { const p = await r.json(); detail = p.detail || p.title || detail; } catch (_) { /* not JSON */ }
      showBoardMessage(`Could not ${action === "markNoShow" ? "mark the no-show" : action} ${reference(b.booking_id)}: ${detail}`);
    }
    // the feed brings the change (and every other dashboard of the clinic sees it too)
  }

  function actions(b, now) {
    const box = el("div", "b-actions");
    const st = b.state || "BOOKING_STATE_CONFIRMED";
    if (st !== "BOOKING_STATE_CONFIRMED" && st !== "BOOKING_STATE_UNSPECIFIED") {
      box.append(el("span", `badge state-${st.toLowerCase()}`, STATE_WORDS[st] || st));
      return box;
    }
    const button = (label, handler) => {
      const btn = el("button", "b-action", label);
      btn.type = "button";
      btn.addEventListener("click", handler);
      box.append(btn);
    };
    button("Cancel", () => {
      const reason = window.prompt(`Cancel ${reference(b.booking_id)} with a full refund — reason for the owner:`);
      if (reason && reason.trim()) act(b, "cancel", { reason: reason.trim() });
    });
    if (new Date(b.slot_start_time) <= now) {
      button("Completed", () => act(b, "complete"));
      button("No-show", () => act(b, "markNoShow"));
    }
    return box;
  }

  function announce(text) {
    const el = $("announcer");
    el.textContent = "";
    setTimeout(() => { el.textContent = text; }, 50);
  }

  // ---------------------------------------------------------------------------------------------
  // rendering (clinic time zone)
  // ---------------------------------------------------------------------------------------------

  const fmtCache = new Map();
  function fmt(key, options) {
    const tz = state.clinic?.time_zone || "UTC";
    const id = `${tz}|${key}`;
    if (!fmtCache.has(id)) fmtCache.set(id, new Intl.DateTimeFormat(key === "key" ? "en-US" : undefined, { timeZone: tz, ...options }));
    return fmtCache.get(id);
  }
  /** YYYY-MM-DD of an instant in the clinic's time zone (sortable as a string). */
  function dayKey(d) {
    const parts = {};
    for (const p of fmt("key", { year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(d)) parts[p.type] = p.value;
    return `${parts.year}-${parts.month}-${parts.day}`;
  }
  const timeOf = (iso) => fmt("time", { hour: "2-digit", minute: "2-digit" }).format(new Date(iso));
  function dayHeading(iso) {
    const key = dayKey(new Date(iso));
    const today = dayKey(new Date());
    const label = fmt("day", { weekday: "long", day: "numeric", month: "long" }).format(new Date(iso));
    if (key === today) return `Today, ${label}`;
    if (key === nextDay(today)) return `Tomorrow, ${label}`;
    return label;
  }
  function nextDay(key) {
    const [y, m, d] = key.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
  }
  const isShown = (b) => dayKey(new Date(b.slot_start_time)) >= dayKey(new Date());

  function money(amount) {
    if (!amount || !amount.currency) return "";
    const currency = amount.currency;
    const f = new Intl.NumberFormat(undefined, { style: "currency", currency });
    const digits = f.resolvedOptions().maximumFractionDigits;
    return f.format(Number(amount.amount_minor || 0) / 10 ** digits);
  }

  const species = (s) => {
    const name = String(s || "").replace(/^SPECIES_/, "").toLowerCase();
    return !name || name === "unspecified" ? "" : name.charAt(0).toUpperCase() + name.slice(1);
  };
  const reference = (id) => String(id).slice(0, 8).toUpperCase();

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => { state.renderQueued = false; render(); });
  }

  function render() {
    if (!state.clinic) return;
    const now = new Date();
    const today = dayKey(now);
    const shown = [...state.bookings.values()]
      .filter((x) => isShown(x.event.booking))
      .sort((a, b) => a.event.booking.slot_start_time.localeCompare(b.event.booking.slot_start_time)
                      || a.event.booking.booking_id.localeCompare(b.event.booking.booking_id));
    const days = new Map();
    for (const item of shown) {
      const key = dayKey(new Date(item.event.booking.slot_start_time));
      if (!days.has(key)) days.set(key, []);
      days.get(key).push(item);
    }
    const sections = [];
    for (const [key, items] of days) {
      const section = el("section", "day");
      section.dataset.day = key;
      const headingId = `day-${key}`;
      section.setAttribute("aria-labelledby", headingId);
      const h2 = el("h2", "", dayHeading(items[0].event.booking.slot_start_time));
      h2.id = headingId;
      h2.append(el("span", "day-count", items.length === 1 ? "1 booking" : `${items.length} bookings`));
      const list = el("ul", "bookings card");
      for (const item of items) list.append(row(item, now));
      section.append(h2, list);
      sections.push(section);
    }
    $("days").replaceChildren(...sections);
    const loading = !state.synced && shown.length === 0;
    $("empty").hidden = loading || shown.length > 0;
    const todayCount = days.get(today)?.length || 0;
    const upcoming = shown.length - todayCount;
    $("summary").textContent = loading ? "Loading bookings…"
      : `${todayCount} ${todayCount === 1 ? "booking" : "bookings"} today · ${upcoming} upcoming`;
    $("clinic-meta").textContent = `${fmt("long", { weekday: "long", day: "numeric", month: "long", year: "numeric" }).format(now)} · times in ${state.clinic.time_zone}`;
  }

  function row(item, now) {
    const b = item.event.booking;
    const li = el("li", "booking");
    li.dataset.bookingId = b.booking_id;
    li.dataset.reference = reference(b.booking_id);
    if (item.freshAt) {
      li.dataset.arrived = "live";
      const age = Date.now() - item.freshAt;
      if (age < FRESH_MS) {
        li.classList.add("is-fresh");
        li.style.animationDelay = `-${age}ms`;
      }
    }
    if (new Date(b.slot_end_time || b.slot_start_time) < now) li.classList.add("is-past");

    const time = el("div", "b-time");
    const start = el("time", "", timeOf(b.slot_start_time));
    start.dateTime = b.slot_start_time;
    time.append(start);
    if (b.slot_end_time) time.append(el("span", "b-end", `until ${timeOf(b.slot_end_time)}`));

    const main = el("div", "b-main");
    const service = el("span", "b-service", b.service_name || "Appointment");
    if (item.freshAt && Date.now() - item.freshAt < FRESH_MS) service.append(el("span", "badge", "New"));
    const kind = species(b.pet_species);
    main.append(service, el("span", "b-pet", kind ? `${b.pet_name} (${kind})` : b.pet_name));

    const owner = el("div", "b-owner");
    owner.append(el("span", "b-owner-name", b.owner_name || "—"));
    if (b.owner_email) {
      const mail = el("a", "b-email", b.owner_email);
      mail.href = `mailto:${b.owner_email}`;
      owner.append(mail);
    }

    const amount = el("div", "b-amount", money(b.amount));
    if (b.pay_at_clinic) amount.append(el("span", "badge badge-unpaid", "Pay at clinic"));
    const ref = el("div", "b-ref");
    const code = el("code", "", reference(b.booking_id));
    code.title = `Booking ${b.booking_id}`;
    ref.append(el("span", "visually-hidden", "Reference "), code);

    li.dataset.state = b.state || "BOOKING_STATE_CONFIRMED";
    li.append(time, main, owner, amount, ref, actions(b, now));
    return li;
  }

  // ---------------------------------------------------------------------------------------------
  // boot
  // ---------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("clinic-select").addEventListener("change", (e) => {
      const clinic = state.me?.clinics.find((c) => c.clinic_id === e.target.value);
      if (clinic) selectClinic(clinic);
    });
    $("schedule-date").addEventListener("change", (e) => {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(e.target.value)) return;
      state.scheduleDay = e.target.value;
      loadSchedule();
    });
    setInterval(() => { if (state.clinic && !$("board-view").hidden) render(); }, 60000); // day rollover
    if (store.access) start(); else signedOut();
  });
})();
