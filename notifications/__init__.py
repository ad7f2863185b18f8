"""WeChat subscribe messages, SMS and email behind one ``Notifier`` interface, fed by the outbox.

Arrives with the jobs issue; never imports flask, payments or billing_adapter.
"""
