"""Pydantic request and response models that mirror the contract (replicas-openapi-2.0.0.json)."""
