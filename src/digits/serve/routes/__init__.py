"""Routers, one per area: the page, the API reference, service metadata, and prediction."""
