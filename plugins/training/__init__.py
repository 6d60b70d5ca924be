"""Training scripts for the built-in models (torch lives here and nowhere below ``plugins``)."""
