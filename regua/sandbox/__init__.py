"""Development tools kept apart from the production adapters: the gateway simulator, the SMTP sink."""
