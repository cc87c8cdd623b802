from dev.cli import main

main()
