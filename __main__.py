from zoo.core.cli import main

main()
