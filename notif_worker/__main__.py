from notif_worker.adapters.joining import join_early

joining = (
    join_early()
)  # before the worker's imports: they overlap the join (see notif_worker.adapters.joining)

from notif_worker.server import main  # noqa: E402

main(joining)
