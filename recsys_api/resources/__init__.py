"""Falcon resources, one module per noun; thin: validate, call a service, shape the reply."""
