"""Replicas: a self-hosted, drop-in compatible Replica API."""

__version__ = "0.1.0"
