"""Production gateway adapters behind billing's port (`billing.ports.Gateway`): the Asaas client."""
