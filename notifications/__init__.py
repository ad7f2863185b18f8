"""WeChat subscribe messages, SMS and email behind one ``Notifier`` interface, fed by the outbox.

Fed by the outbox (topic ``notify``, see contract.md); never imports flask, payments or
billing_adapter (receipts, which read the payments, live in ``portal.receipts``).
"""
