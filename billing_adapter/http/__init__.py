"""The HTTP adapter to an external billing system (docs/billing-api.md)."""
