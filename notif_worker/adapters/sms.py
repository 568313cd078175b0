"""Texts through Twilio's Programmable Messaging API with the official ``twilio`` SDK (its asyncio
HTTP client), its base URL a setting so that the dev stack and the tests use the local stand-in
(``petpro_dev/sms_sandbox``) and production ``https://api.twilio.com``.

Twilio's documented error codes decide what a failure means: 21610 (the recipient replied STOP) →
PhoneOptedOut, 21211 / 21614 / 21612 / 21408 (the number cannot get texts from us) → MessageRefused, both
for good.  A call that got no answer within ``timeout`` seconds, a connection broken after the request
went out, or a 5xx other than 503 may have been taken: SendOutcomeUnknown (never retried blind: Twilio's
Messages API has no idempotency key).  Anything else the provider answered (429, 503, other 4xx) or
a connection that never opened means it did not take the message: transient, retried.

The SDK's ``AsyncTwilioHttpClient(timeout=...)`` does not bound a call (its ``request`` uses only the
per-call timeout, which ``messages.create_async`` does not pass: aiohttp's default of 5 minutes), so
each call here runs under ``asyncio.timeout``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from notif_worker.domain import MessageRefused, PhoneOptedOut, SendOutcomeUnknown

TWILIO_API_BASE = "https://api.twilio.com"
UNSUBSCRIBED = 21610
# not a mobile number we may text: invalid, not SMS-capable, a landline, a region not enabled
UNREACHABLE = frozenset({21211, 21612, 21614, 21408})
# how far the provider's clock may be behind ours when we look for a text sent by a worker that died
CLOCK_SLACK = timedelta(seconds=60)
# the newest messages to a number looked through for a text (an owner gets a few texts an hour)
LOOK_BACK = 200


class TwilioSms:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        *,
        api_base: str = TWILIO_API_BASE,
        messaging_service_sid: str = "",
        status_callback: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.account_sid, self.auth_token, self.api_base, self.timeout = (
            account_sid,
            auth_token,
            api_base.rstrip("/"),
            timeout,
        )
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.validator = RequestValidator(auth_token)

    @property
    def client(self) -> Client:
        """The SDK's client, made on first use inside the event loop (its aiohttp session needs one)."""
        if self._client is None:
            self._http = AsyncTwilioHttpClient(timeout=self.timeout)
            self._client = Client(self.account_sid, self.auth_token, http_client=self._http)
            self._client.api.base_url = self.api_base  # the SDK's own domain object: every call goes there
        return self._client

    async def send(self, to: str, body: str) -> str:
        kwargs: dict[str, str] = {"to": to, "body": body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.sender
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        try:
            async with asyncio.timeout(self.timeout):
                msg = await self.client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            if exc.code == UNSUBSCRIBED:
                raise PhoneOptedOut(f"twilio {exc.code}: {exc.msg}") from exc
            if exc.code in UNREACHABLE:
                raise MessageRefused(f"twilio {exc.code}: {exc.msg}") from exc
            if exc.status >= 500 and exc.status != 503:
                raise SendOutcomeUnknown(f"twilio answered {exc.status}: {exc.msg}") from exc
            raise
        except TimeoutError as exc:
            raise SendOutcomeUnknown(f"twilio did not answer within {self.timeout:g} s") from exc
        except aiohttp.ClientConnectorError:
            raise  # never connected: not taken
        except (aiohttp.ClientError, OSError) as exc:
            raise SendOutcomeUnknown(f"the connection to twilio broke: {exc!r}") from exc
        return str(msg.sid)

    async def sent_since(self, to: str, body: str, since: datetime) -> str | None:
        """Not filtered by ``DateSent``: a message Twilio took but has not sent yet (queued) has none;
        the newest messages to the number are looked through by when they were created."""
        after = since - CLOCK_SLACK
        async with asyncio.timeout(self.timeout):
            messages = await self.client.messages.list_async(to=to, limit=LOOK_BACK)
        for msg in messages:
            created = msg.date_created or msg.date_sent
            if msg.body == body and (created is None or created >= after):
                return str(msg.sid)
        return None

    def valid_webhook(self, url: str, params: dict[str, str], signature: str) -> bool:
        return bool(signature) and bool(self.validator.validate(url, params, signature))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
