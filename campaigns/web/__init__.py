"""The web service: one ASGI application (FastAPI) under uvicorn.

It receives the gateways' webhooks today; the operators' API, receipts and metrics are added as
more routers in :mod:`campaigns.web.routers`, mounted by :func:`campaigns.web.app.create_app`.
"""

from campaigns.web.app import create_app

__all__ = ["create_app"]
