"""Deferred payment plans: models (tables, state machine, bill holds) and service (rules)."""
