"""The `replicas` command."""
