"""The container engine left the host's packet forwarding alone.

A docker daemon started plainly sets iptables' FORWARD policy to DROP: from then on, traffic between
network namespaces over a bridge is silently dropped, and the netns suites (tests/k8s/test_multihost.py)
time out for a reason nowhere in their logs.  `make image` starts dockerd with --iptables=false
--ip-forward=false --bridge=none (petpro_dev/image.py); this test runs before the netns suites (the files
run in name order) and fails at once, with the fix, if the policy is not ACCEPT."""

from __future__ import annotations

import pytest

from petpro_dev.image import forward_policy


def test_the_forward_policy_is_accept_before_the_netns_suites_run() -> None:
    policy = forward_policy()
    if policy is None:
        pytest.skip("iptables is not installed: nothing can have changed the FORWARD policy")
    assert policy == "ACCEPT", (
        f"iptables FORWARD policy is {policy}: a container engine (a dockerd started without "
        "--iptables=false) dropped forwarding, which breaks every network-namespace test. "
        "Reset it with `iptables -P FORWARD ACCEPT` and start dockerd as petpro_dev/image.py does."
    )
