"""The protobuf contracts and the code-generation pipeline (petpro_dev.codegen)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import protovalidate
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from petpro_dev import codegen

ROOT = codegen.ROOT

GENERATED_MODULES = [
    "buf.validate.validate_pb2",
    "petpro_api.common.v1.money_pb2",
    "petpro_api.auth.v1.auth_pb2",
    "petpro_api.auth.v1.auth_pb2_grpc",
    "petpro_api.booking.v1.booking_pb2",
    "petpro_api.booking.v1.booking_pb2_grpc",
    "petpro_api.booking.v1.events_pb2",
    "petpro_api.payment.v1.payment_pb2",
    "petpro_api.payment.v1.payment_pb2_grpc",
    "petpro_api.notification.v1.clinic_feed_pb2",
    "petpro_api.notification.v1.clinic_feed_pb2_grpc",
    "petpro_api.notification.v1.notification_pb2",
    "petpro_api.notification.v1.notification_pb2_grpc",
    "petpro_api.mobile.v1.mobile_pb2",
    "petpro_api.mobile.v1.mobile_pb2_grpc",
]


def _uuid() -> str:
    return str(uuid.uuid4())


def _violations(msg) -> dict[str, str]:
    """{dotted field path: rule id} of every violation."""
    out = {}
    for v in protovalidate.collect_violations(msg):
        path = ".".join(e.field_name for e in v.proto.field.elements)
        out[path] = v.proto.rule_id
    return out


def _run_codegen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "petpro_dev.codegen", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- generated code ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", GENERATED_MODULES)
def test_generated_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_services_and_stubs_exist() -> None:
    from petpro_api.auth.v1 import auth_pb2_grpc
    from petpro_api.booking.v1 import booking_pb2_grpc
    from petpro_api.mobile.v1 import mobile_pb2_grpc
    from petpro_api.notification.v1 import clinic_feed_pb2_grpc, notification_pb2_grpc
    from petpro_api.payment.v1 import payment_pb2_grpc

    for mod, service in [
        (auth_pb2_grpc, "AuthService"),
        (booking_pb2_grpc, "BookingService"),
        (payment_pb2_grpc, "PaymentService"),
        (clinic_feed_pb2_grpc, "ClinicFeedService"),
        (notification_pb2_grpc, "NotificationService"),
        (mobile_pb2_grpc, "MobileService"),
    ]:
        assert hasattr(mod, f"{service}Stub")
        assert hasattr(mod, f"{service}Servicer")
        assert hasattr(mod, f"add_{service}Servicer_to_server")


def test_generated_code_has_its_own_import_root() -> None:
    """Python modules under ``petpro_api``; proto files, packages and wire names stay ``petpro.*``;
    nothing generated lands in the kit's ``petpro`` namespace."""
    from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc

    assert not (ROOT / "gen" / "petpro").exists()
    assert booking_pb2.DESCRIPTOR.name == "petpro/booking/v1/booking.proto"
    assert booking_pb2.DESCRIPTOR.package == "petpro.booking.v1"
    assert booking_pb2.ReserveSlotRequest.__module__ == "petpro_api.booking.v1.booking_pb2"
    assert booking_pb2.ReserveSlotRequest.DESCRIPTOR.full_name == "petpro.booking.v1.ReserveSlotRequest"
    assert booking_pb2_grpc.petpro_dot_booking_dot_v1_dot_booking__pb2 is booking_pb2  # one module, not two
    for path in (ROOT / "gen" / "petpro_api").rglob("*.py*"):
        if path.suffix in (".py", ".pyi"):
            text = path.read_text()
            assert "from petpro." not in text and "import petpro." not in text, path


def test_public_rest_routes() -> None:
    """The REST API: MobileService (the BFF), BookingService's public catalog reads, AuthService's key
    set, the clinic operations (ClinicAdminService, ClinicStaffService) and NotificationService's calendar
    feed and quiet hours; no other service and no other method of these services has a route."""
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / codegen.IMAGE_PATH).read_bytes())
    routes = set()
    for f in image.file:
        if not f.package.startswith("petpro."):
            continue
        for service in f.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                routes.add((f"{f.package}.{service.name}", verb.upper(), getattr(rule, verb), rule.body))
    booking, mobile = "petpro.booking.v1.BookingService", "petpro.mobile.v1.MobileService"
    assert {r for r in routes if r[0] == booking} == {
        (booking, "GET", "/v1/clinics", ""),
        (booking, "GET", "/v1/clinics/{clinic_id}/services", ""),
        (booking, "GET", "/v1/services/{service_id}/availability", ""),
        (booking, "GET", "/v1/services/{service_id}/availableDays", ""),
    }
    assert {r[1:] for r in routes if r[0] == mobile} == {
        ("POST", "/v1/auth/register", "*"),
        ("POST", "/v1/auth/login", "*"),
        ("POST", "/v1/auth/refresh", "*"),
        ("POST", "/v1/pets", "*"),
        ("GET", "/v1/pets", ""),
        ("GET", "/v1/pets/{pet_id}", ""),
        ("POST", "/v1/me:export", "*"),
        ("POST", "/v1/me:delete", "*"),
        ("PATCH", "/v1/pets/{pet.pet_id}", "pet"),
        ("POST", "/v1/pets/{pet_id}:archive", "*"),
        ("POST", "/v1/bookings", "*"),
        ("GET", "/v1/reservations/{lock_id}", ""),
        ("GET", "/v1/bookings/{booking_id}", ""),
        ("GET", "/v1/bookings", ""),
        ("GET", "/v1/me/notifications", ""),
        ("POST", "/v1/me/devices", "*"),
        ("POST", "/v1/bookings/{booking_id}:cancel", "*"),
        ("POST", "/v1/bookings/{booking_id}:reschedule", "*"),
        ("POST", "/v1/clinics/{clinic_id}/bookings/{booking_id}:cancel", "*"),
        ("POST", "/v1/clinics/{clinic_id}/bookings/{booking_id}:complete", "*"),
        ("POST", "/v1/clinics/{clinic_id}/bookings/{booking_id}:markNoShow", "*"),
        ("POST", "/v1/clinics/{clinic_id}/bookings", "*"),
        ("POST", "/v1/clinics/{clinic_id}/bookings/{booking_id}:move", "*"),
        ("GET", "/v1/me/notification-preferences", ""),
        ("PATCH", "/v1/me/notification-preferences", "*"),
        ("POST", "/v1/auth/password-reset", "*"),
        ("POST", "/v1/auth/password-reset:confirm", "*"),
        ("POST", "/v1/auth/email:verify", "*"),
        ("POST", "/v1/auth/logout", "*"),
        ("GET", "/v1/me", ""),
        ("PATCH", "/v1/me", "user"),
        ("POST", "/v1/me/email:sendVerification", "*"),
        ("POST", "/v1/me/email:change", "*"),
        ("POST", "/v1/me/password:change", "*"),
        ("POST", "/v1/me/sessions:revokeAll", "*"),
    }
    auth = "petpro.auth.v1.AuthService"
    assert {r for r in routes if r[0] == auth} == {(auth, "GET", "/.well-known/jwks.json", "")}
    staff = "petpro.auth.v1.ClinicStaffService"
    assert {r[1:] for r in routes if r[0] == staff} == {
        ("POST", "/v1/clinics/{clinic_id}/invitations", "*"),
        ("POST", "/v1/invitations:accept", "*"),
        ("GET", "/v1/clinics/{clinic_id}/staff", ""),
        ("DELETE", "/v1/clinics/{clinic_id}/staff/{user_id}", ""),
        ("POST", "/v1/clinics/{clinic_id}/service-accounts", "*"),
        ("POST", "/v1/clinics/{clinic_id}/service-accounts/{client_id}:rotate-secret", "*"),
        ("POST", "/v1/auth/service-token", "*"),
    }
    admin = "petpro.booking.v1.ClinicAdminService"
    assert {r[1:] for r in routes if r[0] == admin} == {
        ("POST", "/v1/clinics", "clinic"),
        ("PATCH", "/v1/clinics/{clinic.clinic_id}", "clinic"),
        ("PUT", "/v1/clinics/{clinic_id}/opening-hours", "*"),
        ("POST", "/v1/clinics/{clinic_id}/closures", "closure"),
        ("GET", "/v1/clinics/{clinic_id}/closures", ""),
        ("DELETE", "/v1/clinics/{clinic_id}/closures/{closure_id}", ""),
        ("PUT", "/v1/clinics/{clinic_id}/day-overrides/{override.date}", "override"),
        ("DELETE", "/v1/clinics/{clinic_id}/day-overrides/{date}", ""),
        ("POST", "/v1/clinics/{clinic_id}/services", "service"),
        ("PATCH", "/v1/services/{service.service_id}", "service"),
        ("POST", "/v1/services/{service_id}:archive", "*"),
        ("GET", "/v1/clinics/{clinic_id}/bookings", ""),
        ("POST", "/v1/clinics/{clinic_id}/providers", "provider"),
        ("PATCH", "/v1/clinics/{provider.clinic_id}/providers/{provider.provider_id}", "provider"),
        ("GET", "/v1/clinics/{clinic_id}/providers", ""),
        ("POST", "/v1/clinics/{clinic_id}/providers/{provider_id}:archive", "*"),
        ("POST", "/v1/clinics/{clinic_id}/providers/{provider_id}/timeOff", "time_off"),
        ("DELETE", "/v1/clinics/{clinic_id}/providers/{provider_id}/timeOff/{time_off_id}", ""),
        ("POST", "/v1/clinics/{clinic_id}/resources", "resource"),
        ("PATCH", "/v1/clinics/{resource.clinic_id}/resources/{resource.resource_id}", "resource"),
        ("GET", "/v1/clinics/{clinic_id}/resources", ""),
        ("POST", "/v1/clinics/{clinic_id}/resources/{resource_id}:archive", "*"),
    }
    notification = "petpro.notification.v1.NotificationService"
    assert {r[1:] for r in routes if r[0] == notification} == {
        ("GET", "/v1/me/calendar.ics", ""),
        ("POST", "/v1/me/calendar-feed-token", "*"),
        ("POST", "/v1/me/calendar-feed-token:rotate", "*"),
        ("DELETE", "/v1/me/calendar-feed-token", ""),
        ("GET", "/v1/clinics/{clinic_id}/quiet-hours", ""),
        ("PUT", "/v1/clinics/{clinic_id}/quiet-hours", "quiet_hours"),
        ("POST", "/v1/me/sms-phone:startVerification", "*"),
        ("POST", "/v1/me/sms-phone:confirmVerification", "*"),
        ("GET", "/v1/me/sms-phone", ""),
        ("GET", "/v1/clinics/{clinic_id}/sms-settings", ""),
        ("PUT", "/v1/clinics/{clinic_id}/sms-settings", "sms_settings"),
    }
    assert {r[0] for r in routes} == {booking, mobile, auth, staff, admin, notification}


# --- validation rules (protovalidate) --------------------------------------------------------


def _valid_reserve_slot():
    from petpro_api.booking.v1 import booking_pb2

    req = booking_pb2.ReserveSlotRequest(
        request_id=_uuid(),
        service_id=_uuid(),
        pet_id=_uuid(),
        owner_user_id=_uuid(),
        owner_email="owner@example.com",
        owner_name="Ada",
    )
    req.slot_start_time.FromJsonString("2030-01-07T09:30:00Z")
    return req


def test_valid_reserve_slot_passes() -> None:
    protovalidate.validate(_valid_reserve_slot())


def test_invalid_reserve_slot_names_fields() -> None:
    req = _valid_reserve_slot()
    req.service_id = "not-a-uuid"
    req.ClearField("slot_start_time")
    req.owner_email = "nope"
    with pytest.raises(protovalidate.ValidationError) as err:
        protovalidate.validate(req)
    assert len(err.value.violations) == 3
    assert _violations(req) == {
        "service_id": "string.uuid",
        "slot_start_time": "required",
        "owner_email": "string.email",
    }


@pytest.mark.parametrize("module", ["petpro_api.auth.v1.auth_pb2", "petpro_api.mobile.v1.mobile_pb2"])
def test_register_validation(module: str) -> None:
    pb = importlib.import_module(module)
    protovalidate.validate(pb.RegisterRequest(email="ada@example.com", password="correct horse", name="Ada"))
    bad = pb.RegisterRequest(email="ada-at-example.com", password="short", name="")
    assert _violations(bad) == {
        "email": "string.email",
        "password": "string.min_len",
        "name": "string.min_len",
    }


def test_money_and_payment_session_rules() -> None:
    from petpro_api.common.v1 import money_pb2
    from petpro_api.payment.v1 import payment_pb2

    req = payment_pb2.CreatePaymentSessionRequest(
        request_id=_uuid(),
        order_ref=_uuid(),
        amount=money_pb2.Money(amount_minor=4550, currency="EUR"),
        customer_email="owner@example.com",
        description="Vaccination",
    )
    protovalidate.validate(req)
    req.amount.CopyFrom(money_pb2.Money(amount_minor=0, currency="eur"))
    req.success_url = "not a url"
    assert _violations(req) == {
        "amount": "amount.positive",
        "amount.currency": "string.pattern",
        "success_url": "string.uri",
    }


def test_enum_page_size_date_and_oneof_rules() -> None:
    from petpro_api.booking.v1 import booking_pb2
    from petpro_api.mobile.v1 import mobile_pb2

    assert _violations(mobile_pb2.CreatePetRequest(name="Rex")) == {"species": "enum.not_in"}
    assert _violations(mobile_pb2.CreatePetRequest(name="Rex", species=99)) == {
        "species": "enum.defined_only"
    }
    protovalidate.validate(mobile_pb2.CreatePetRequest(name="Rex", species=booking_pb2.SPECIES_DOG))
    assert _violations(mobile_pb2.ListPetsRequest(page_size=101)) == {"page_size": "int32.gte_lte"}
    bad_date = booking_pb2.GetAvailabilityRequest(service_id=_uuid(), date="2030-13-01")
    assert _violations(bad_date) == {"date": "string.pattern"}
    assert _violations(booking_pb2.ListBookingsRequest()) == {"parent": "required"}
    protovalidate.validate(booking_pb2.ListBookingsRequest(clinic_id=_uuid()))


# --- the pipeline ------------------------------------------------------------------------------


def test_check_passes_on_committed_gen() -> None:
    result = _run_codegen("--check")
    assert result.returncode == 0, result.stderr


def test_check_fails_after_proto_change(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    money = protos / "petpro" / "common" / "v1" / "money.proto"
    money.write_text(
        money.read_text().replace("string currency = 2", "string currency = 2;\n  string note = 3")
    )
    (protos / "petpro" / "common" / "v1" / "extra.proto").write_text(
        'syntax = "proto3";\n\npackage petpro.common.v1;\n\n// Extra.\nmessage Extra {}\n'
    )
    before = {
        p: p.read_bytes() for p in (ROOT / "gen").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }

    result = _run_codegen("--check", "--proto-root", str(protos))

    assert result.returncode == 1
    assert "stale: run make gen" in result.stderr
    assert "stale: petpro_api/common/v1/money_pb2.py" in result.stderr
    assert "stale: petpro_api/petpro.binpb" in result.stderr
    assert "missing: petpro_api/common/v1/extra_pb2.py" in result.stderr
    after = {
        p: p.read_bytes() for p in (ROOT / "gen").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert after == before, "--check must not write to gen/"


def test_generate_is_deterministic_and_reports_extra_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        out.mkdir()
        codegen.generate(out)
    assert codegen.diff_trees(first, second) == ([], [], [])
    (second / "petpro_api" / "leftover_pb2.py").write_text("")
    assert codegen.diff_trees(first, second) == ([], [], ["petpro_api/leftover_pb2.py"])


@pytest.mark.skipif(
    not (ROOT / "node_modules" / ".bin" / "buf").exists(), reason="buf not installed (npm ci)"
)
def test_buf_lint_clean() -> None:
    result = _run_codegen("--lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    not (ROOT / "node_modules" / ".bin" / "buf").exists(), reason="buf not installed (npm ci)"
)
def test_buf_breaking_clean_against_released_image() -> None:
    assert codegen.RELEASED_IMAGE.exists(), "the released descriptor image must be committed"
    result = _run_codegen("--breaking")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    not (ROOT / "node_modules" / ".bin" / "buf").exists(), reason="buf not installed (npm ci)"
)
def test_buf_breaking_reports_a_renumbered_field(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    money = protos / "petpro" / "common" / "v1" / "money.proto"
    assert "string currency = 2" in money.read_text()
    money.write_text(money.read_text().replace("string currency = 2", "string currency = 3"))

    result = _run_codegen("--breaking", "--proto-root", str(protos), "--against", str(codegen.RELEASED_IMAGE))

    assert result.returncode != 0
    assert "money.proto" in result.stdout + result.stderr
