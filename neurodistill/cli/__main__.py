"""`python -m neurodistill.cli` (as torchrun launches it): the `neurodistill` command."""

from . import main

if __name__ == "__main__":
    main()
