from notif_worker.server import main

main()
