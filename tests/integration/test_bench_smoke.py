"""The benchmark harness runs (seconds-long sizes) against the session mesh, so `make bench` cannot rot.
It checks that every figure is produced with its baseline; it asserts no speed."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import Params, run, write_results
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration


async def test_every_benchmark_figure_is_produced(mesh: Stack, tmp_path):
    params = Params(
        duration=0.5,
        concurrency=4,
        contenders=30,
        flow_clients=2,
        rates=(10,),
        fanout_seconds=1.0,
        notifier_events=40,
        idle_seconds=1.0,
        smoke=True,
    )
    bench = await run(mesh, params, up_seconds=None)
    names = [f.name for f in bench.figures]
    for expected in (
        "kit tax",
        "read RPC direct",
        "read via REST edge",
        "ReserveSlot transactions/s",
        "contention",
        "contention: CPU per refused ReserveSlot",
        "full flow",
        "full flow: PetPro CPU per booking",
        "fan-out @10/s: commit→clinic feed",
        "fan-out @10/s: commit→email",
        "notif_worker events/s",
        "notif_worker CPU per event",
        "notif_worker, two replicas",
        "ConfirmBooking p50",
        "ConfirmBooking p99",
        "CancelBooking (no refund owed) p50",
        "CancelBooking (no refund owed) p99",
        "Availability day view",
        "Availability month view",
        "ReserveSlot provider + room + pet",
        "idle CPU, notif_worker + broker",
        "RSS booking",
    ):
        assert any(n.startswith(expected) for n in names), (expected, names)
    # every figure measured something (idle CPU may round to nothing in a one-second window)
    assert all(f.baseline > 0 and (f.value > 0 or f.name.startswith("idle CPU")) for f in bench.figures), (
        bench.figures
    )
    idle = next(f for f in bench.figures if f.name.startswith("idle CPU"))
    assert {"notif", "kafka"} <= idle.detail["cpu_percent"].keys() and idle.value >= 0, idle.detail
    # both replicas took part (40 events over 6 partitions split 3:3: one idle by chance is ~1e-12)
    replicas = next(f for f in bench.figures if f.name.startswith("notif_worker, two replicas"))
    assert set(replicas.detail["events_per_replica"]) == {"notif", "notif-2"}, replicas.detail
    assert all(k > 0 for k in replicas.detail["events_per_replica"].values()), replicas.detail
    assert replicas.detail["cpu_ms_per_op"]["notif-2"] > 0, replicas.detail
    doc = json.loads(write_results(bench, params, tmp_path).read_text())
    assert {"machine", "params", "figures"} <= doc.keys() and len(doc["figures"]) == len(bench.figures)
    md = (tmp_path / "smoke.md").read_text()
    assert md.startswith("SUMMARY") and "\n| figure |" in md  # the one-screen summary, then the tables
    flow = next(f for f in bench.figures if f.name.startswith("full flow bookings/s"))
    assert flow.detail["rpcs_per_booking"] and flow.detail["db_per_booking"]["transactions"] > 0, flow.detail
