"""regua's billing core: money, calendar, records and the services that change them. No HTTP, no queues."""
