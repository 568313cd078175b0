"""Unknown email and wrong password cost the same work: one argon2 verification against a hash of
the same parameters (no wall-clock measurement needed, so the test cannot flake)."""

from __future__ import annotations

import argon2

from auth_svc.domain import Passwords


class CountingHasher(argon2.PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)  # cheap for the test, same for all
        self.verified: list[argon2.Parameters] = []

    def verify(self, hash, password):  # type: ignore[no-untyped-def, override]
        self.verified.append(argon2.extract_parameters(hash))
        return super().verify(hash, password)


def test_unknown_email_and_wrong_password_do_the_same_hashing():
    hasher = CountingHasher()
    passwords = Passwords(hasher)
    real = passwords.hash("correct-horse")
    assert passwords.verify(None, "guess") is False  # unknown email
    assert passwords.verify(real, "guess") is False  # wrong password
    assert passwords.verify(real, "correct-horse") is True
    unknown, wrong, right = hasher.verified
    assert unknown == wrong == right == argon2.extract_parameters(real)
