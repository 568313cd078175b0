"""a scheduled hold's one statement as a function (``hold_scheduled``): PL/pgSQL keeps the plan of its
statement per connection, and ``SET plan_cache_mode = force_generic_plan`` makes that the generic plan
from the first call.  Called as a prepared statement the same query was planned afresh per call (a
custom plan: 2-6 ms of PostgreSQL's CPU on a busy box against ~1 ms for executing the generic one), and
behind a transaction pooler (no server-side prepared statements) it was planned every call anyway; the
setting only applies inside the function, every other statement keeps the server's default.  The
body is the statement of ``booking_svc/adapters/repository/schedule.py`` as of this revision
(``%(name)s`` → ``$n`` in the order of the arguments); a change to it is a new migration with
``CREATE OR REPLACE FUNCTION``.  Expand only: the previous release does not call it.

Revision ID: 0012_hold_scheduled_fn
Revises: 0011_reservation_notify
"""

from alembic import op

revision = "0012_hold_scheduled_fn"
down_revision = "0011_reservation_notify"
branch_labels = None
depends_on = None

# (the function keeps the schema it was made in, as claims_follow_reservation; the out columns are
# prefixed so they cannot be confused with the tables' unit, provider_id and resource_ids)
HOLD_SCHEDULED = """
CREATE FUNCTION hold_scheduled(
  p_lock_id uuid, p_owner uuid, p_owner_email text, p_owner_name text, p_owner_locale text,
  p_request_id text, p_request_hash text, p_service_id uuid, p_clinic_id uuid, p_pet_id uuid,
  p_start timestamptz, p_end timestamptz, p_claim_end timestamptz, p_expires_at timestamptz, p_amount_minor bigint,
  p_currency text, p_now timestamptz, p_catalog_version bigint, p_providers uuid[], p_seqs int[],
  p_day_start timestamptz, p_day_end timestamptz, p_assignment text, p_items uuid[], p_item_needs int[],
  p_item_seqs int[], p_item_species text[], p_quantities int[], p_wanted bigint, p_allowed text[])
RETURNS TABLE (o_earlier boolean, o_unit smallint, o_provider_id uuid, o_resource_ids uuid[])
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  WITH cat AS (SELECT version FROM catalog_state WHERE id = 1),
  pet AS (SELECT owner_user_id, species FROM pets WHERE id = $10),
  earlier AS (SELECT 1 FROM reservations WHERE owner_user_id = $2 AND request_id = $6),
  that_day AS (
    SELECT c.subject_id, count(*) AS n FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
    WHERE c.active AND c.kind = 'provider' AND c.subject_id = ANY($19::uuid[])
      AND c.during && tstzrange($21, $22) AND lower(c.during) >= $21 AND (r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > $17))
    GROUP BY c.subject_id),
  provider AS (
    SELECT p.id, p.seq FROM unnest($19::uuid[], $20::int[]) WITH ORDINALITY AS p(id, seq, ord)
    LEFT JOIN that_day d ON d.subject_id = p.id
    WHERE NOT EXISTS (SELECT 1 FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
      WHERE c.active AND c.kind = 'provider' AND c.subject_id = p.id
        AND c.during && tstzrange($11, $13) AND (r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > $17)))
    ORDER BY coalesce(d.n, 0), p.ord
    LIMIT 1),
  item AS (
    SELECT i.id, i.need, i.seq, row_number() OVER (PARTITION BY i.need ORDER BY i.ord) AS k
    FROM unnest($24::uuid[], $25::int[], $26::int[], $27::text[])
      WITH ORDINALITY AS i(id, need, seq, species, ord)
    WHERE (i.species = '' OR strpos(i.species, ',' || (SELECT species FROM pet) || ',') > 0)
      AND NOT EXISTS (SELECT 1 FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
      WHERE c.active AND c.kind = 'resource' AND c.subject_id = i.id
        AND c.during && tstzrange($11, $13) AND (r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > $17)))),
  taken AS (
    SELECT item.id, item.seq, item.need, item.k
    FROM item JOIN unnest($28::int[]) WITH ORDINALITY AS q(quantity, need) ON q.need = item.need
    WHERE item.k <= q.quantity),
  ins AS (
    INSERT INTO reservations (lock_id, owner_user_id, owner_email, owner_name, owner_locale, request_id,
      request_hash, service_id, clinic_id, pet_id, unit, during, state, expires_at, amount_minor, currency, created_at,
      updated_at, provider_id, assignment, resource_ids)
    SELECT $1, $2, $3, $4, $5, $6, $7,
      $8, $9, $10,
      COALESCE((SELECT seq FROM provider), (SELECT seq FROM taken ORDER BY need, k LIMIT 1), 1),
      tstzrange($11, $12), 'HELD', $14, $15, $16, $17, $17,
      (SELECT id FROM provider), $23, ARRAY(SELECT id FROM taken ORDER BY need, k)
    WHERE NOT EXISTS (SELECT 1 FROM earlier) AND (SELECT owner_user_id FROM pet) = $2
      AND (SELECT version FROM cat) = $18
      AND (cardinality($30::text[]) = 0 OR (SELECT species FROM pet) = ANY($30::text[]))
      AND NOT EXISTS (SELECT 1 FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
      WHERE c.active AND c.kind = 'pet' AND c.subject_id = $10
        AND c.during && tstzrange($11, $13) AND (r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > $17)))
      AND (cardinality($19::uuid[]) = 0 OR EXISTS (SELECT 1 FROM provider))
      AND (SELECT count(*) FROM taken) = $29
    RETURNING unit, provider_id, resource_ids),
  claimed AS (
    INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
    SELECT $1, k.kind, k.subject_id, 0, $9, tstzrange($11, $13), true
    FROM ins CROSS JOIN LATERAL (
      SELECT 'pet', $10::uuid
      UNION ALL SELECT 'provider', ins.provider_id WHERE ins.provider_id IS NOT NULL
      UNION ALL SELECT 'resource', u FROM unnest(ins.resource_ids) AS u) AS k(kind, subject_id))
  SELECT EXISTS (SELECT 1 FROM earlier), (SELECT unit FROM ins), (SELECT provider_id FROM ins),
    (SELECT resource_ids FROM ins);
END $$"""


def upgrade() -> None:
    op.execute(HOLD_SCHEDULED)


def downgrade() -> None:
    op.execute("DROP FUNCTION hold_scheduled")
