"""Reconciliation against channel statements (对账): fetch, keep, parse, match, resolve."""
