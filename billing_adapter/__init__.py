"""The one boundary to the utility's billing system (embedded engine or HTTP adapter).

Arrives with the billing issue; never imports flask, payments or notifications.
"""
