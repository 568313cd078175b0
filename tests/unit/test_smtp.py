"""The kit's SMTP client without a server: SMTP_URL parsing and the transient / permanent split."""

from __future__ import annotations

import aiosmtplib
import pytest

from petpro.smtp import (
    SmtpEndpoint,
    SmtpPermanentError,
    SmtpTransientError,
    classify,
    envelope_address,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:7425", SmtpEndpoint("127.0.0.1", 7425, False)),
        ("smtp://mail.example.test", SmtpEndpoint("mail.example.test", 25, False)),
        ("smtps://mail.example.test", SmtpEndpoint("mail.example.test", 465, True)),
        ("smtps://mail.example.test:2465", SmtpEndpoint("mail.example.test", 2465, True)),
        (
            "smtp://apikey:p%40ss%3Aword@relay.example.test:587",
            SmtpEndpoint("relay.example.test", 587, False, "apikey", "p@ss:word"),
        ),
        ("smtp://user@relay.example.test", SmtpEndpoint("relay.example.test", 25, False, "user", None)),
    ],
)
def test_smtp_urls(url: str, expected: SmtpEndpoint) -> None:
    assert SmtpEndpoint.parse(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.test", "mail.example.test:25", "smtp://h:99999"])
def test_what_is_not_an_smtp_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        SmtpEndpoint.parse(url)


def test_the_envelope_sender_is_the_address_of_the_from_header() -> None:
    assert envelope_address("PetPro <bookings@petpro.dev>") == "bookings@petpro.dev"
    assert envelope_address("bookings@petpro.dev") == "bookings@petpro.dev"


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(c, "no", f"r{i}@x.test") for i, c in enumerate(codes)]
    )


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (aiosmtplib.SMTPResponseException(451, "try again later"), SmtpTransientError, 451),
        (aiosmtplib.SMTPDataError(554, "message rejected"), SmtpPermanentError, 554),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), SmtpPermanentError, 535),
        (aiosmtplib.SMTPSenderRefused(553, "no", "a@b.test"), SmtpPermanentError, 553),
        (refused(550, 553), SmtpPermanentError, 550),
        (refused(550, 452), SmtpTransientError, 452),  # one may still go through later
        (aiosmtplib.SMTPNotSupported("STARTTLS extension not supported"), SmtpPermanentError, None),
        (aiosmtplib.SMTPServerDisconnected("gone"), SmtpTransientError, None),
        (aiosmtplib.SMTPConnectError("refused"), SmtpTransientError, None),
        (aiosmtplib.SMTPTimeoutError("slow"), SmtpTransientError, None),
        (ConnectionRefusedError(111, "refused"), SmtpTransientError, None),
    ],
)
def test_errors_are_transient_or_permanent(error: BaseException, kind: type, code: int | None) -> None:
    classified = classify(error)
    assert type(classified) is kind and classified.code == code
    assert classified.transient is (kind is SmtpTransientError)
