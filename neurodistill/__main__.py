"""`python -m neurodistill`: the same as the `neurodistill` command."""

from .cli import main

if __name__ == "__main__":
    main()
