from lagchand_edge.cli import main

main()
