from headcast.cli import main

main()
