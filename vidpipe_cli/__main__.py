"""``python -m vidpipe_cli``: the ``vidpipe`` command."""

from vidpipe_cli.main import main

main()
