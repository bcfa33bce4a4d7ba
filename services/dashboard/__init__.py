"""The dashboard: a FastAPI app with a JSON API under ``/api/v1`` and server-rendered pages."""
