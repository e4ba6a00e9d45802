"""The sandbox simulator's fees: Asaas's on each installment, never more than the installment itself."""

from __future__ import annotations

from datetime import date

import pytest

from regua.sandbox.simulator.payments import CARD_FIXED_FEE_CENTS, FIXED_FEE_CENTS, CreateRequest


def request(billing_type: str, total_cents: int, installments: int = 1) -> CreateRequest:
    return CreateRequest(
        customer="cus_1",
        billing_type=billing_type,
        total_cents=total_cents,
        due_date=date(2027, 12, 31),
        external_reference=None,
        description=None,
        installments=installments,
        installment_id=None,
        terms={},
    )


@pytest.mark.parametrize(
    ("billing_type", "total_cents", "installments", "fees"),
    [
        ("CREDIT_CARD", 19990, 1, [CARD_FIXED_FEE_CENTS + 598]),  # 2.99% of R$ 199,90, rounded, plus the fixed fee
        ("BOLETO", 19990, 1, [FIXED_FEE_CENTS]),
        ("CREDIT_CARD", 30, 1, [30]),  # a few centavos a plan change left: nets nothing, not less
        ("PIX", 150, 1, [150]),
        ("CREDIT_CARD", 100, 3, [17, 17, 17]),  # 49 + 3 over three installments of 33, 33 and 34
    ],
)
def test_the_fee_on_each_installment_is_asaas_s_and_never_more_than_the_installment(
    billing_type: str, total_cents: int, installments: int, fees: list[int]
) -> None:
    asked = request(billing_type, total_cents, installments)

    assert asked.fees() == fees
    assert all(0 <= fee <= value for fee, value in zip(asked.fees(), asked.split(), strict=True))
