"""Evaluator: hourly performance reports (Spark over MongoDB ``frame_metrics`` into Postgres
``performance_reports``) and model accuracy reports (``vidpipe evaluate accuracy``)."""
