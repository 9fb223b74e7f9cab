"""One router per concern, each mounted by :func:`campaigns.web.app.create_app`."""
