# One image recipe for every vidpipe process; EXTRAS picks the pyproject extra it needs:
#   docker build -f docker/vidpipe.Dockerfile --build-arg EXTRAS=detector -t vidpipe-detector .
# The project is installed editable so infra/migrations (not a package) stays next to the
# code that runs it (`vidpipe provision`).
FROM python:3.11-slim-bookworm

ARG EXTRAS=""
# Debian packages an image needs besides Python ones; the report job (EXTRAS=evaluator):
#   --build-arg SYSTEM_PACKAGES="openjdk-17-jre-headless libpostgresql-jdbc-java"
ARG SYSTEM_PACKAGES=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN if [ -n "$SYSTEM_PACKAGES" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $SYSTEM_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN useradd --create-home --uid 10001 vidpipe
WORKDIR /app

# Dependencies first so code edits do not reinstall them.
COPY pyproject.toml ./
RUN mkdir -p vidpipe vidpipe_ml vidpipe_cli services infra \
    && touch vidpipe/__init__.py vidpipe_ml/__init__.py vidpipe_cli/__init__.py \
        services/__init__.py infra/__init__.py \
    && pip install -e ".${EXTRAS:+[${EXTRAS}]}" \
    && rm -rf vidpipe vidpipe_ml vidpipe_cli services infra

COPY vidpipe ./vidpipe
COPY vidpipe_ml ./vidpipe_ml
COPY vidpipe_cli ./vidpipe_cli
COPY services ./services
COPY infra ./infra
COPY datasets ./datasets
RUN pip install --no-deps -e ".${EXTRAS:+[${EXTRAS}]}"

USER vidpipe
ENTRYPOINT ["vidpipe"]
CMD ["--help"]
