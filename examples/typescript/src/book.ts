// A typed PetPro client, the way a mobile team would write one: types generated from the API's
// OpenAPI document (openapi-typescript --read-write-markers), calls through openapi-fetch.
//
//   register → log in → list clinics and their services → find a free slot → add a pet → book
//   → print the payment link → wait for the booking to be confirmed → print the booking
//
// Usage: node build/src/book.js [API base URL]   (default http://127.0.0.1:7480, or $PETPRO_API)
// Prints one line per step; "PAY <url>" is the hosted payment page to open (or to pay in a test),
// "BOOKED <booking_id> <state>" the end. Exits non-zero on any error (problem+json reason printed).

import createClient from "openapi-fetch";
import type { components, paths } from "../generated/api.js";

type Problem = components["schemas"]["Problem"];

const base = process.argv[2] ?? process.env["PETPRO_API"] ?? "http://127.0.0.1:7480";
const api = createClient<paths>({ baseUrl: base });

function fail(step: string, problem: Problem | undefined, status: number): never {
  throw new Error(`${step}: HTTP ${status} ${problem?.reason ?? ""} ${problem?.detail ?? ""}`.trim());
}

function day(offset: number): string {
  return new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
}

async function main(): Promise<void> {
  const email = `ts-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
  const password = "typed client secret";

  const registered = await api.POST("/v1/auth/register", { body: { email, password, name: "Tess" } });
  if (!registered.data) fail("register", registered.error, registered.response.status);
  const user = registered.data.user;
  console.log(`REGISTERED ${user?.user_id ?? "?"} verified=${String(user?.email_verified ?? false)}`);

  const login = await api.POST("/v1/auth/login", { body: { email, password } });
  if (!login.data) fail("login", login.error, login.response.status);
  const auth = { Authorization: `Bearer ${login.data.access_token}` };

  // the first clinic of the catalog that offers a service (as a "book again nearby" screen would pick);
  // the catalog is paged, and a newly listed clinic may have no service yet
  let clinic: { clinic_id: string; name: string } | undefined;
  let service: { service_id: string; name: string } | undefined;
  let pageToken: string | undefined;
  do {
    const clinics = await api.GET("/v1/clinics", {
      params: { query: { page_size: 50, ...(pageToken ? { page_token: pageToken } : {}) } },
    });
    if (!clinics.data) fail("list clinics", clinics.error, clinics.response.status);
    for (const c of clinics.data.clinics) {
      const services = await api.GET("/v1/clinics/{clinic_id}/services", {
        params: { path: { clinic_id: c.clinic_id } },
      });
      if (!services.data) fail("list services", services.error, services.response.status);
      const first = services.data.services[0];
      if (first) {
        clinic = c;
        service = first;
        break;
      }
    }
    pageToken = clinics.data.next_page_token || undefined;
  } while (service === undefined && pageToken);
  if (!clinic || !service) throw new Error("no clinic in the catalog offers a service");
  console.log(`SERVICE ${service.service_id} ${service.name} at ${clinic.name}`);

  let slot: string | undefined;
  for (let offset = 2; offset < 60 && slot === undefined; offset++) {
    const free = await api.GET("/v1/services/{service_id}/availability", {
      params: { path: { service_id: service.service_id }, query: { date: day(offset) } },
    });
    if (!free.data) fail("availability", free.error, free.response.status);
    slot = free.data.slots.find((s) => s.free)?.start_time;
  }
  if (slot === undefined) throw new Error("no free slot in the next 60 days");

  const pet = await api.POST("/v1/pets", {
    headers: auth,
    body: { name: "Rex", species: "SPECIES_DOG" },
  });
  if (!pet.data) fail("add pet", pet.error, pet.response.status);
  const petId = pet.data.pet?.pet_id;
  if (!petId) throw new Error("the pet came back without an id");

  const booked = await api.POST("/v1/bookings", {
    headers: { ...auth, "Idempotency-Key": `ts-${email}` },
    body: { service_id: service.service_id, pet_id: petId, slot, payment_method: "card" },
  });
  if (!booked.data) fail("book", booked.error, booked.response.status);
  const lockId = booked.data.lock_id;
  console.log(`HELD ${lockId} ${booked.data.status}`);
  console.log(`PAY ${booked.data.payment_url}`);

  // a long-poll, not a polling loop: each GET waits (up to wait_seconds) for the hold to change
  const deadline = Date.now() + Number(process.env["PETPRO_WAIT_SECONDS"] ?? "120") * 1000;
  for (;;) {
    const asked = Date.now();
    const held = await api.GET("/v1/reservations/{lock_id}", {
      headers: auth,
      params: { path: { lock_id: lockId }, query: { wait_seconds: 25 } },
    });
    if (!held.data) fail("reservation", held.error, held.response.status);
    if (held.data.status === "CONFIRMED") {
      const booking = await api.GET("/v1/bookings/{booking_id}", {
        headers: auth,
        params: { path: { booking_id: held.data.booking_id } },
      });
      if (!booking.data) fail("booking", booking.error, booking.response.status);
      console.log(`BOOKED ${booking.data.booking?.booking_id ?? "?"} ${booking.data.booking?.state ?? "?"}`);
      return;
    }
    if (held.data.status !== "PENDING_PAYMENT") throw new Error(`the hold ended ${held.data.status}`);
    if (Date.now() > deadline) throw new Error("not paid in time");
    // a server that did not wait (an older release during an upgrade): don't ask again at once
    if (Date.now() - asked < 1000) await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
