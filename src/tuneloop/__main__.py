from tuneloop.cli.main import main

main()
