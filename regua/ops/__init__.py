"""The ops dashboard: queues, the money that needs a person, webhook events, dead letters, accounts."""
