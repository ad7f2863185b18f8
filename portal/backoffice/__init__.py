"""The back office (/staff): staff identity, roles, districts, and what each role may do."""
