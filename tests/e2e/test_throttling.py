"""Credential stuffing through the real edge: failed logins back off per (account, client address)
with 429 + Retry-After, and the account's owner, from another address, is never locked out.
(The test mesh makes a back-off last 600 s, so nothing here depends on the machine's speed.)"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def test_failed_logins_back_off_for_the_attacker_only(api: Api):
    victim = await api.user(password="correct-horse")
    for _ in range(5):  # AUTH_THROTTLE_LOGIN_FREE_PER_ACCOUNT_SOURCE, the default
        r = await _login(api.c, victim.email, "wrong-horse")
        assert (r.status_code, r.json()["reason"]) == (401, "INVALID_CREDENTIALS")
    r = await _login(api.c, victim.email, "wrong-horse")  # the 6th failure starts the back-off
    assert r.status_code == 401
    for password in ("wrong-horse", "correct-horse"):  # locked, whatever the password
        r = await _login(api.c, victim.email, password)
        assert (r.status_code, r.json()["reason"]) == (429, "THROTTLED"), r.text
        assert 0 < int(r.headers["retry-after"]) <= 600
    # the owner, from another address (127.0.0.2 is loopback too), logs in as usual
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=str(api.c.base_url), transport=transport, timeout=20) as owner:
        r = await _login(owner, victim.email, "correct-horse")
        assert r.status_code == 200, r.text
        # and the attacker's failures on one account do not slow other accounts from that address
    other = await api.user(password="correct-horse")
    assert (await _login(api.c, other.email, "correct-horse")).status_code == 200
