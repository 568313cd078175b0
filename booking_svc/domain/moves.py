"""A staff move (issue 20, staff operations): which provider and resource items a booking has at its
new time, checked before anything is written.  Whether they are free is the claims' constraints'
to say, in the move's transaction."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from booking_svc.domain.catalog import Clinic, GridSlot, Service
from booking_svc.domain.errors import ProviderUnavailable, SameSlot
from booking_svc.domain.schedule import ClinicSchedule, Provider, Resource, claim_end, qualified, scheduled
from petpro.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True)
class MoveTarget:
    slot: GridSlot
    provider: Provider | None
    items: tuple[Resource, ...]

    @property
    def provider_id(self) -> uuid.UUID | None:
        return self.provider.id if self.provider else None

    @property
    def resource_ids(self) -> tuple[uuid.UUID, ...]:
        return tuple(i.id for i in self.items)


def plan_move(
    svc: Service,
    sched: ClinicSchedule,
    clinic: Clinic,
    slot: GridSlot,
    species: str | None,
    current: tuple[uuid.UUID | None, tuple[uuid.UUID, ...]],
    provider_id: uuid.UUID | None,
    resource_ids: Sequence[uuid.UUID],
) -> MoveTarget:
    """The booking's provider and items after the move: the named ones (checked: the provider
    performs the service and works over the slot and its buffer; the items are the clinic's, fit for
    the pet, and exactly the service's needs), else the ones it has.  INVALID_ARGUMENT with field
    violations for what cannot be; SLOT_SAME when nothing would change."""
    current_provider, current_items = current
    violations: list[FieldViolation] = []
    if not scheduled(svc):
        if provider_id is not None:
            violations.append(FieldViolation("provider_id", "this service has no providers", "NO_PROVIDERS"))
        if resource_ids:
            violations.append(
                FieldViolation("resource_ids", "this service needs no resources", "NO_RESOURCES")
            )
        if violations:
            raise InvalidArgument("this service is booked by time only", violations=violations)
        return MoveTarget(slot, None, ())
    provider: Provider | None = None
    wanted = provider_id or current_provider
    if provider_id is not None and not svc.provider_ids:
        violations.append(FieldViolation("provider_id", "this service has no providers", "NO_PROVIDERS"))
    elif wanted is not None:
        provider = next((p for p in qualified(svc, sched) if p.id == wanted), None)
        if provider is None:
            violations.append(
                FieldViolation("provider_id", "does not perform this service", "PROVIDER_NOT_QUALIFIED")
            )
    by_id = {r.id: r for r in sched.resources}
    before_items = len(violations)
    items: list[Resource] = []
    named = bool(resource_ids)
    for i, rid in enumerate(resource_ids or current_items):
        item = by_id.get(rid)
        field = f"resource_ids[{i}]" if named else "resource_ids"
        if item is None or item.archived:
            violations.append(FieldViolation(field, "no such resource at this clinic", "RESOURCE_NOT_FOUND"))
        elif not item.fits(species):
            violations.append(FieldViolation(field, "not for this pet's species", "RESOURCE_SPECIES"))
        else:
            items.append(item)
    if named and len(violations) == before_items:  # every named item is usable: are they what it needs?
        needed = Counter({n.resource_type: n.quantity for n in svc.needs})
        if Counter(i.resource_type for i in items) != needed:
            want = ", ".join(f"{q} {t}" for t, q in sorted(needed.items())) or "none"
            violations.append(
                FieldViolation(
                    "resource_ids", f"must be what the service needs: {want}", "RESOURCES_MISMATCH"
                )
            )
    if violations:
        raise InvalidArgument(violations[0].description, violations=violations)
    if provider is not None and not provider.works(clinic, slot.start, slot.end, claim_end(svc, slot.end)):
        raise ProviderUnavailable(
            f"{provider.display_name} does not work at that time",
            violations=[FieldViolation("slot", "the provider does not work then", "PROVIDER_UNAVAILABLE")],
        )
    return MoveTarget(slot, provider, tuple(items))


def check_changes(
    target: MoveTarget, start: datetime, provider_id: uuid.UUID | None, items: tuple[uuid.UUID, ...]
) -> None:
    """SLOT_SAME when the move would leave the booking where it is."""
    if (target.slot.start, target.provider_id, set(target.resource_ids)) == (start, provider_id, set(items)):
        raise SameSlot("the booking is already there: nothing to move", metadata={"field": "slot"})
