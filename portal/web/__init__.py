"""The customer web site: thin views that parse, call a service and render."""
