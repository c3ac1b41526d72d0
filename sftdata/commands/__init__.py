"""Sub-commands of the ``sftdata`` CLI; each module exposes ``add_parser(subparsers)``."""
