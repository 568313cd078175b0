from edge.gateway.envoy import main

main()
