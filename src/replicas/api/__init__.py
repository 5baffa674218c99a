"""HTTP surface: one router per resource; schemas are the wire contract."""
