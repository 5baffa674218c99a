"""What the product does. Services hold the rules and know nothing of HTTP."""
