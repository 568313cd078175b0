"""``python -m petpro_dev`` is the ``petpro`` CLI."""

from petpro_dev.cli import main

if __name__ == "__main__":
    main()
