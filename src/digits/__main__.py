"""`python -m digits` runs the command line."""

from digits.cli import main

main()
