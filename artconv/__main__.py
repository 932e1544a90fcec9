from artconv.cli import main

main()
