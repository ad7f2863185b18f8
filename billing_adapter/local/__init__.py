"""The embedded billing engine: effective-dated tariffs (``tariffs``), pricing a period's usage
into bill lines (``pricing``) and late fees (``late_fees``). Flask-free."""
