"""Payment gateways: the port regua charges through, the Asaas client, and a simulator of its API."""

from regua.gateway.asaas import AsaasGateway
from regua.gateway.port import (
    BoletoCode,
    CardCharge,
    CardDeclined,
    Gateway,
    GatewayError,
    GatewayPayment,
    GatewayRefund,
    GatewayRejected,
    GatewayUnavailable,
    ManualCharge,
    PaymentNotFound,
    PixCode,
)

__all__ = [
    "AsaasGateway",
    "BoletoCode",
    "CardCharge",
    "CardDeclined",
    "Gateway",
    "GatewayError",
    "GatewayPayment",
    "GatewayRefund",
    "GatewayRejected",
    "GatewayUnavailable",
    "ManualCharge",
    "PaymentNotFound",
    "PixCode",
]
