"""The performance report job: Spark over MongoDB ``frame_metrics`` into Postgres
``performance_reports`` (``vidpipe evaluate``, ``python -m services.reports``)."""
