"""``python -m petpro`` is the ``petpro`` CLI."""

from petpro.cli import main

if __name__ == "__main__":
    main()
