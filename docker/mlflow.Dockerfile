# MLflow tracking server + model registry: Postgres backend store, artifacts proxied to S3,
# basic auth (the `auth` extra; users in SQLite under /home/mlflow/auth, a volume).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install "mlflow[auth]>=3.0,<4" "psycopg[binary]>=3.2" "boto3>=1.35" \
    && useradd --create-home --uid 10001 mlflow
USER mlflow
RUN mkdir -p /home/mlflow/auth
EXPOSE 5000
ENTRYPOINT ["mlflow", "server"]
