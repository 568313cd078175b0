from notif_worker.early import join_early

joining = join_early()  # before the worker's imports: they overlap the join (see notif_worker.early)

from notif_worker.server import main  # noqa: E402

main(joining)
