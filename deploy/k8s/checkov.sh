#!/usr/bin/env bash
# Run checkov (pinned) with the given arguments, from its own virtualenv under var/tools/,
# created on first use from PyPI. checkov pins older boto3, botocore, networkx and packaging
# than vidpipe's own environment uses, so it cannot be installed into .venv.
#   deploy/k8s/checkov.sh --framework kubernetes --skip-download -f rendered.yaml
# PYTHON picks the interpreter the virtualenv is made from (default: python3).
set -euo pipefail
VERSION=3.3.30
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/var/tools/checkov-venv"
STAMP="$VENV/.checkov-$VERSION"
if [[ ! -f "$STAMP" ]]; then
    echo "checkov.sh: installing checkov==$VERSION into $VENV (once)" >&2
    "${PYTHON:-python3}" -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$VERSION" >&2
    touch "$STAMP"
fi
exec "$VENV/bin/checkov" "$@"
