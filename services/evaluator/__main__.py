"""``python -m services.evaluator [--since 2h] [--until ISO] [--json PATH] | accuracy ...``.

Also the spark-submit entry point (the script is then run by path, not as a module)::

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit --master 'local[2]' \\
        --jars /usr/share/java/postgresql.jar services/evaluator/__main__.py --since 2h
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    from services.evaluator.cli import evaluate_app

    evaluate_app(prog_name="vidpipe evaluate")


if __name__ == "__main__":
    # Run by path, Python puts this directory first on sys.path, where settings.py and cli.py
    # would shadow any top-level module of those names; vidpipe is importable from the venv.
    if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    main()
