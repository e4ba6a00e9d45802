"""regua: the dunning and payment-webhook service. This package assembles the parts and runs them."""

__version__ = "0.1.0"
