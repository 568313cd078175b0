"""The OpenAPI document generated from the descriptor set covers the public REST API."""

from __future__ import annotations

import re
from typing import Any

import pytest

from edge.gateway.openapi import build_openapi, default_descriptor_path

MOBILE = "petpro.mobile.v1.MobileService"
BOOKING = "petpro.booking.v1.BookingService"
AUTH = "petpro.auth.v1.AuthService"
DIRECT = {
    "ListClinics",
    "ListServices",
    "GetAvailability",
    "ListAvailableDays",
}  # transcoded straight to BookingService
ROUTES = {
    ("post", "/v1/auth/register"): ("Register", False),
    ("post", "/v1/auth/login"): ("Login", False),
    ("post", "/v1/auth/refresh"): ("RefreshToken", False),
    ("post", "/v1/auth/password-reset"): ("RequestPasswordReset", False),
    ("post", "/v1/auth/password-reset:confirm"): ("ResetPassword", False),
    ("post", "/v1/auth/email:verify"): ("VerifyEmail", False),
    ("post", "/v1/auth/logout"): ("Logout", True),
    ("get", "/v1/me"): ("GetMe", True),
    ("patch", "/v1/me"): ("UpdateMe", True),
    ("post", "/v1/me/email:sendVerification"): ("ResendVerificationEmail", True),
    ("post", "/v1/me/email:change"): ("ChangeEmail", True),
    ("post", "/v1/me/password:change"): ("ChangePassword", True),
    ("post", "/v1/me/sessions:revokeAll"): ("LogoutEverywhere", True),
    ("get", "/v1/clinics"): ("ListClinics", False),
    ("get", "/v1/clinics/{clinic_id}/services"): ("ListServices", False),
    ("get", "/v1/services/{service_id}/availability"): ("GetAvailability", False),
    ("get", "/v1/services/{service_id}/availableDays"): ("ListAvailableDays", False),
    ("post", "/v1/pets"): ("CreatePet", True),
    ("get", "/v1/pets"): ("ListPets", True),
    ("get", "/v1/pets/{pet_id}"): ("GetPet", True),
    ("post", "/v1/me:export"): ("ExportMyData", True),
    ("post", "/v1/me:delete"): ("DeleteAccount", True),
    ("patch", "/v1/pets/{pet_id}"): ("UpdatePet", True),
    ("post", "/v1/pets/{pet_id}:archive"): ("ArchivePet", True),
    ("post", "/v1/bookings"): ("CreateBooking", True),
    ("get", "/v1/bookings"): ("ListBookings", True),
    ("get", "/v1/reservations/{lock_id}"): ("GetReservation", True),
    ("get", "/v1/bookings/{booking_id}"): ("GetBooking", True),
    ("get", "/v1/me/notifications"): ("ListNotifications", True),
    ("post", "/v1/me/devices"): ("RegisterDevice", True),
    ("post", "/v1/bookings/{booking_id}:cancel"): ("CancelBooking", True),
    ("post", "/v1/bookings/{booking_id}:reschedule"): ("RescheduleBooking", True),
    ("post", "/v1/clinics/{clinic_id}/bookings/{booking_id}:cancel"): ("StaffCancelBooking", True),
    ("post", "/v1/clinics/{clinic_id}/bookings/{booking_id}:complete"): ("CompleteBooking", True),
    ("post", "/v1/clinics/{clinic_id}/bookings/{booking_id}:markNoShow"): ("MarkNoShow", True),
    ("post", "/v1/clinics/{clinic_id}/bookings"): ("StaffCreateBooking", True),
    ("post", "/v1/clinics/{clinic_id}/bookings/{booking_id}:move"): ("StaffMoveBooking", True),
    ("get", "/v1/me/notification-preferences"): ("GetNotificationPreferences", True),
    ("patch", "/v1/me/notification-preferences"): ("UpdateNotificationPreferences", True),
    ("get", "/.well-known/jwks.json"): ("GetJwks", False),  # transcoded straight to AuthService
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_openapi(default_descriptor_path().read_bytes())


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_validates_as_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_covers_every_rest_route_with_its_method(doc: dict[str, Any]) -> None:
    rpc_ops = {
        (method, path): op["operationId"]
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "x-grpc-method" in op and op["x-grpc-method"].split("/")[1] in (MOBILE, BOOKING, AUTH)
    }
    assert rpc_ops == {k: v[0] for k, v in ROUTES.items()}
    for (method, path), (name, _) in ROUTES.items():
        op = doc["paths"][path][method]
        service = BOOKING if name in DIRECT else AUTH if name == "GetJwks" else MOBILE
        assert op["x-grpc-method"] == f"/{service}/{name}"
        assert op["summary"] and op["description"]  # from the proto comments
    assert "post" in doc["paths"]["/webhooks/stripe"]


CLINIC_OPS = {
    "petpro.booking.v1.ClinicAdminService": {
        "CreateClinic",
        "UpdateClinic",
        "SetOpeningHours",
        "CreateClosure",
        "ListClosures",
        "DeleteClosure",
        "SetDayOverride",
        "DeleteDayOverride",
        "CreateService",
        "UpdateService",
        "ArchiveService",
        "ListClinicBookings",
        "CreateProvider",
        "UpdateProvider",
        "ListProviders",
        "ArchiveProvider",
        "CreateProviderTimeOff",
        "DeleteProviderTimeOff",
        "CreateResource",
        "UpdateResource",
        "ListResources",
        "ArchiveResource",
    },
    "petpro.auth.v1.ClinicStaffService": {
        "InviteStaff",
        "AcceptInvitation",
        "ListStaff",
        "RemoveStaff",
        "CreateServiceAccount",
        "RotateServiceAccountSecret",
        "IssueServiceToken",
    },
}


def test_clinic_operations_are_documented_with_their_auth(doc: dict[str, Any]) -> None:
    ops = {
        op["x-grpc-method"]: op
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "x-grpc-method" in op
    }
    for service, methods in CLINIC_OPS.items():
        for name in methods:
            op = ops[f"/{service}/{name}"]
            public = name in {"AcceptInvitation", "IssueServiceToken"}
            assert bool(op.get("security")) is not public, name  # only the two token exchanges are public
            assert op["summary"] and op["description"]


def test_path_query_and_header_parameters(doc: dict[str, Any]) -> None:
    for (method, path), _ in ROUTES.items():
        op = doc["paths"][path][method]
        path_params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert path_params == set(re.findall(r"\{(\w+)\}", path))
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
    avail = doc["paths"]["/v1/services/{service_id}/availability"]["get"]
    params = {p["name"]: p for p in avail["parameters"]}
    assert params["service_id"]["schema"]["format"] == "uuid"
    assert params["date"]["in"] == "query" and params["date"]["required"] is True
    assert "pattern" in params["date"]["schema"]
    listing = {p["name"]: p for p in doc["paths"]["/v1/pets"]["get"]["parameters"]}
    assert listing.keys() == {"page_size", "page_token"}
    assert listing["page_size"]["schema"] == {
        "type": "integer",
        "format": "int32",
        "minimum": 0,
        "maximum": 100,
    }
    booking = doc["paths"]["/v1/bookings"]["post"]
    header = next(p for p in booking["parameters"] if p["in"] == "header")
    assert header["name"] == "Idempotency-Key" and header["required"] is False  # recommended, not required
    assert "requestBody" in booking and "requestBody" not in doc["paths"]["/v1/bookings"]["get"]


def test_bearer_security_only_where_auth_is_needed(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for (method, path), (_, secured) in ROUTES.items():
        op = doc["paths"][path][method]
        assert op["security"] == ([{"bearerAuth": []}] if secured else []), path
        assert ("401" in op["responses"]) is secured


def test_responses_created_and_problem_errors(doc: dict[str, Any]) -> None:
    for path in ("/v1/auth/register", "/v1/pets", "/v1/bookings"):
        assert "201" in doc["paths"][path]["post"]["responses"]
    assert "200" in doc["paths"]["/v1/auth/login"]["post"]["responses"]
    bad = doc["paths"]["/v1/bookings"]["post"]["responses"]["400"]
    response = doc["components"]["responses"][bad["$ref"].rsplit("/", 1)[1]]
    problem = _resolve(doc, response["content"]["application/problem+json"]["schema"])
    assert {"type", "title", "status", "detail", "reason", "violations", "request_id"} <= problem[
        "properties"
    ].keys()


def test_message_schemas_follow_proto3_json(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/v1/bookings"]["post"]
    request = _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
    props = request["properties"]
    assert set(props) == {"service_id", "pet_id", "slot", "payment_method", "provider_id"}  # snake_case
    assert props["slot"]["type"] == "string" and props["slot"]["format"] == "date-time"
    assert props["service_id"]["format"] == "uuid"
    assert props["payment_method"]["enum"] == ["card"]
    assert set(request["required"]) == {"service_id", "pet_id", "slot", "payment_method"}
    assert "Idempotency-Key" in request["description"]

    response = _resolve(doc, op["responses"]["201"]["content"]["application/json"]["schema"])
    money = _resolve(doc, response["properties"]["amount"])
    assert money["properties"]["amount_minor"]["type"] == "string"  # int64
    assert response["properties"]["status"]["readOnly"] is True

    pet = doc["components"]["schemas"]["Pet"]
    species = _resolve(doc, pet["properties"]["species"])
    assert species["type"] == "string" and "SPECIES_DOG" in species["enum"]
    assert "breed" not in pet.get("required", [])  # proto3 optional
    clinics = _resolve(
        doc, doc["paths"]["/v1/clinics"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert clinics["properties"]["clinics"]["type"] == "array"
    assert clinics["properties"]["clinics"]["items"]["$ref"].endswith("/Clinic")


async def test_docs_page_is_swagger_ui_served_offline() -> None:
    """/docs is Swagger UI from the vendored swagger-ui-dist: every script and style comes from the
    edge itself (no CDN), and it loads the generated /openapi.json."""
    import httpx

    from edge.web.app import create_app
    from edge.web.deps import HttpDeps

    app = create_app(HttpDeps(payment=None, booking=None))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        refs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.text)
        assert refs and all(ref.startswith("/docs/assets/") for ref in refs)  # nothing from elsewhere
        assert "<script>" not in page.text  # no inline script (CSP script-src 'self')
        for ref in refs:
            asset = await client.get(ref)
            assert asset.status_code == 200, ref
        bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in bundle.text
        init = await client.get("/docs/assets/init.js")
        assert '"/openapi.json"' in init.text
        assert (await client.get("/openapi.json")).json()["info"]["title"] in page.text
        assert (await client.get("/docs/assets/other.js")).status_code == 404


# -- what a generated strict client needs (openapi-typescript + tsc --strict, `make ts-check`) -------------
def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_alternative_is_typed(doc: dict[str, Any]) -> None:
    """An anyOf branch without a type reads as `unknown` in a generated client (ids were `unknown`)."""
    for node in _walk(doc):
        for branch in node.get("anyOf", []):
            assert "type" in branch or "$ref" in branch, node


def test_optional_ids_are_strings_or_empty(doc: dict[str, Any]) -> None:
    clinic = doc["components"]["schemas"]["ClinicInput"]["properties"]["clinic_id"]
    assert clinic["type"] == "string"
    assert clinic["anyOf"] == [{"type": "string", "const": ""}, {"type": "string", "format": "uuid"}]


def test_path_parameters_have_plain_names(doc: dict[str, Any]) -> None:
    """No `{clinic.clinic_id}`: generated clients and schemathesis template plain names; the URLs are
    the same, so Envoy (which reads the protos' rules) needs nothing."""
    assert "/v1/clinics/{clinic_id}" in doc["paths"] and "/v1/services/{service_id}" in doc["paths"]
    assert set(doc["paths"]["/v1/clinics/{clinic_id}/day-overrides/{date}"]) == {"put", "delete"}
    for path, item in doc["paths"].items():
        names = re.findall(r"\{([^}]+)\}", path)
        assert all("." not in n for n in names), path
        for op in item.values():
            params = [p for p in op.get("parameters", []) if p["in"] == "path"]
            assert [p["name"] for p in params] == names, path
    [param] = [p for p in doc["paths"]["/v1/clinics/{clinic_id}"]["patch"]["parameters"] if p["in"] == "path"]
    assert (param["x-proto-field"], param["schema"]["type"]) == ("clinic.clinic_id", "string")


def test_output_fields_are_read_only_and_required_where_they_always_come_back(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    user, user_input = schemas["User"], schemas["UserInput"]
    assert user["properties"]["user_id"]["readOnly"] and user["properties"]["email_verified"]["readOnly"]
    # answered: every field without presence is printed (scalars, enums, lists), messages may be absent
    assert set(user["required"]) == {
        "user_id", "email", "name", "roles", "clinic_ids", "memberships", "email_verified", "phone",
        "locale", "time_zone",
    }  # fmt: skip
    assert "required" not in user_input  # sent: nothing output-only is asked for
    assert set(schemas["LoginResponse"]["required"]) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }
    booking = schemas["Booking"]
    assert {"booking_id", "state", "clinic_id"} <= set(booking["required"])
    assert "slot_start_time" not in booking["required"] and "amount" not in booking["required"]


def test_requests_send_input_schemas_and_responses_answer_the_others(doc: dict[str, Any]) -> None:
    patch = doc["paths"]["/v1/me"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/UserInput")
    me = _resolve(doc, patch["responses"]["200"]["content"]["application/json"]["schema"])
    assert me["properties"]["user"]["$ref"].endswith("/User")
    create = _resolve(
        doc, doc["paths"]["/v1/pets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    )
    assert set(create["required"]) == {"name", "species"}  # a request: the validation rules only


def test_enums_are_string_enums(doc: dict[str, Any]) -> None:
    enums = [s for s in doc["components"]["schemas"].values() if "enum" in s]
    assert enums and all(s["type"] == "string" and all(isinstance(v, str) for v in s["enum"]) for s in enums)
