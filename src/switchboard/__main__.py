"""`python -m switchboard …`: the `switchboard` command (how `serve --processes` starts its
children, with the interpreter it runs on)."""

from switchboard.cli import main

main()
