from booking_svc.server import main

main()
