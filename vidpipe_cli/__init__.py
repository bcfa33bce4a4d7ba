"""The ``vidpipe`` command: entry points only (one module per domain), on top of the services
and libraries. ``infra`` (the local stack) is reached from here and nowhere else."""
