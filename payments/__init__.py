"""Payment channels behind one interface, the order state machine and reconciliation.

Arrives with the payments issue; never imports flask, billing_adapter or notifications.
"""
