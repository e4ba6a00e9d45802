"""The Asaas API client behind the gateway port: synchronous httpx, exact money, retries, never two charges.

Requests go to `{base_url}/v3/...` with the API key in the `access_token` header. Asaas has no
idempotency header, so every create (card or manual) first asks `GET /v3/payments?externalReference=`
for our charge_id, and asks again after any attempt whose outcome is unclear (a read timeout, a dropped
connection, a 5xx) before it posts again: a timeout after Asaas charged never becomes a second charge.
Requests that surely never reached Asaas (connection refused, connect timeout) are simply retried.
Refunds are not retried after an unclear outcome: partial refunds add up, so the caller decides.

Every request first takes a token from the limiter the client is given (`regua.gateway.throttle`: one
pace shared by every worker process through Redis, REGUA_GATEWAY_MAX_RPS). An HTTP 429 means Asaas did
not look at the request: it is sent again after the wait Asaas asks for (`Retry-After`, in seconds or as
an HTTP date, else Asaas's own `RateLimit-Reset`), or after 1, 2, 4 ... 30 s when it names none, without
using up an attempt, for up to `throttle_patience` seconds of waiting. Past that it is GatewayUnavailable
(the outcome known: nothing was created), which a charge records as an unavailable attempt and retries
with the same reference later: a 429 is never a decline.

Money travels as JSON numbers in reais ("value": 189.90). Amounts are integer centavos here; they are
written digit for digit from `to_decimal_string` (never through a float) and read back with
`Decimal(str(x))` and `parse_decimal`, refusing anything with more than two decimals.

Declines, money and the answers are read in `regua.gateway.asaas_wire`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType

import httpx

from billing.clock import Clock
from billing.ports import (
    BoletoCode,
    CardCharge,
    CardDeclined,
    CustomerRequest,
    GatewayPayment,
    GatewayRefund,
    GatewayUnavailable,
    ManualCharge,
    PixCode,
)
from regua.gateway.asaas_transport import DEFAULT_TIMEOUT, AsaasTransport, NotDelivered, Unclear, default_backoff
from regua.gateway.asaas_transport import throttled_backoff as throttled_backoff
from regua.gateway.asaas_wire import (
    _REFUSAL,
    _errors,
    _installment_number,
    _json_object,
    _optional_text,
    _payment,
    _plain,
    _rejection,
    _segment,
    _text,
)
from regua.gateway.asaas_wire import cents_from_json as cents_from_json
from regua.gateway.asaas_wire import classify_decline as classify_decline
from regua.gateway.asaas_wire import encode_json as encode_json
from regua.gateway.asaas_wire import money as money
from regua.gateway.throttle import RateLimiter
from regua.ops.gateway_queue import WebhookQueue


class AsaasGateway:
    """The Gateway port over the Asaas REST API (v3). Thread-safe; close it, or use it in a `with`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        client: httpx.Client | None = None,
        max_attempts: int = 3,
        backoff: Callable[[int], float] = default_backoff,
        sleep: Callable[[float], None] = time.sleep,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        user_agent: str = "regua",
        limiter: RateLimiter | None = None,
        throttle_patience: float = 60.0,
        wall_clock: Clock | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._transport = AsaasTransport(
            base_url,
            api_key,
            client=client,
            max_attempts=max_attempts,
            backoff=backoff,
            sleep=sleep,
            timeout=timeout,
            user_agent=user_agent,
            limiter=limiter,
            throttle_patience=throttle_patience,
            wall_clock=wall_clock,
        )
        self._call, self._send = self._transport.call, self._transport.send
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> AsaasGateway:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- the port -----------------------------------------------------------------------------

    def ensure_customer(self, customer: CustomerRequest) -> str:
        """Asaas's customer for our account: found by externalReference, else created (and looked for again
        after an unclear answer, so a retry never makes two)."""
        found = self._find_customer(customer.reference)
        if found is not None:
            return found
        fields: dict[str, object] = {
            "name": customer.name,
            "cpfCnpj": customer.document,
            "externalReference": customer.reference,
            "notificationDisabled": True,
        }
        if customer.email:
            fields["email"] = customer.email
        try:
            response, _ = self._call("POST", "/customers", body=encode_json(fields), retry_unclear=False)
        except GatewayUnavailable:
            if (found := self._find_customer(customer.reference)) is not None:
                return found
            raise
        if response.status_code != 200:
            raise _rejection(response, f"create customer {customer.reference}")
        return _text(_json_object(response), "id")

    def _find_customer(self, reference: str) -> str | None:
        params = {"externalReference": reference, "limit": "10"}
        response, _ = self._call("GET", "/customers", params=params, retry_unclear=True)
        if response.status_code != 200:
            raise _rejection(response, f"list customers for {reference}")
        items = _json_object(response).get("data")
        if not isinstance(items, list):
            raise GatewayUnavailable("Asaas listed customers without a data list", outcome_unknown=True)
        for item in items:
            if isinstance(item, Mapping) and item.get("externalReference") == reference and not item.get("deleted"):
                return _text(item, "id")
        return None

    def charge_card(self, charge: CardCharge) -> GatewayPayment:
        fields: dict[str, object] = {
            "customer": charge.customer_id,
            "billingType": "CREDIT_CARD",
            "dueDate": charge.due_date.isoformat(),
            "externalReference": charge.charge_id,
            "creditCardToken": charge.card_token,
            # Required by Asaas with a card: the buyer's IP, kept with the card (the server's must never be sent).
            "remoteIp": charge.remote_ip,
        }
        if charge.installments == 1:
            fields["value"] = money(charge.amount_cents)
        else:
            # Asaas splits the total itself and creates one payment per installment.
            fields["installmentCount"] = charge.installments
            fields["totalValue"] = money(charge.amount_cents)
        if charge.description:
            fields["description"] = charge.description
        return self._create(charge.charge_id, encode_json(fields), self._read_card_answer, charge.first_contact)

    def create_manual_charge(self, charge: ManualCharge) -> tuple[GatewayPayment, PixCode | BoletoCode | None]:
        fields: dict[str, object] = {
            "customer": charge.customer_id,
            "billingType": {"pix": "PIX", "boleto": "BOLETO", "card": "CREDIT_CARD"}[charge.method],
            "value": money(charge.amount_cents),
            "dueDate": charge.due_date.isoformat(),
            "externalReference": charge.charge_id,
        }
        if charge.description:
            fields["description"] = charge.description
        if charge.method == "card" and charge.remote_ip:
            fields["remoteIp"] = charge.remote_ip  # the customer who asked for the card page (never the server)
        payment = self._create(charge.charge_id, encode_json(fields), self._read_manual_answer, charge.first_contact)
        if charge.method == "card":
            return payment, None  # paid on Asaas's own page for it (invoiceUrl): regua never sees the card
        method = payment.method if payment.method in ("pix", "boleto") else charge.method
        code: PixCode | BoletoCode = self._pix_code(payment) if method == "pix" else self._boleto_code(payment)
        return payment, code

    def get_payment(self, payment_id: str) -> GatewayPayment:
        response, _ = self._call("GET", f"/payments/{_segment(payment_id)}", retry_unclear=True)
        if response.status_code != 200:
            raise _rejection(response, f"GET payment {payment_id}")
        return _payment(_json_object(response))

    def find_by_reference(self, charge_id: str) -> GatewayPayment | None:
        params = {"externalReference": charge_id, "limit": "100"}
        response, _ = self._call("GET", "/payments", params=params, retry_unclear=True)
        if response.status_code != 200:
            raise _rejection(response, f"list payments for {charge_id}")
        items = _json_object(response).get("data")
        if not isinstance(items, list):
            raise GatewayUnavailable("Asaas listed payments without a data list", outcome_unknown=True)
        payments = [_payment(item) for item in items if isinstance(item, Mapping)]
        live = [p for p in payments if not p.deleted and p.external_reference == charge_id]
        if not live:
            return None
        rank = {"paid": 0, "pending": 1, "overdue": 1}
        live.sort(key=lambda p: (rank.get(p.state, 2), _installment_number(p)))
        return live[0]

    def cancel(self, payment_id: str) -> None:
        response, unclear = self._call("DELETE", f"/payments/{_segment(payment_id)}", retry_unclear=True)
        if response.status_code == 404 and unclear:
            return  # an earlier attempt we did not hear back from already deleted it
        if not 200 <= response.status_code < 300:
            raise _rejection(response, f"cancel payment {payment_id}")

    def refund(self, payment_id: str, amount_cents: int | None = None, *, description: str = "") -> GatewayRefund:
        fields: dict[str, object] = {}
        if amount_cents is not None:
            if amount_cents <= 0:
                raise ValueError("a refund gives back a positive amount")
            fields["value"] = money(amount_cents)
        if description:
            fields["description"] = description
        path = f"/payments/{_segment(payment_id)}/refund"
        response, _ = self._call("POST", path, body=encode_json(fields), retry_unclear=False)
        if response.status_code != 200:
            raise _rejection(response, f"refund payment {payment_id}")
        payment = _payment(_json_object(response))
        return GatewayRefund(
            payment_id=payment.id,
            status=payment.status,
            amount_cents=amount_cents if amount_cents is not None else payment.amount_cents,
            raw=payment.raw,
        )

    # -- creating without creating twice ------------------------------------------------------

    def _create(
        self, reference: str, body: bytes, read: Callable[[httpx.Response], GatewayPayment], first_contact: bool
    ) -> GatewayPayment:
        """POST a payment once: Asaas takes no idempotency key, so a charge that may have been sent before
        is looked up by our reference first, and again before each retry of an unclear answer."""
        if not first_contact and (existing := self.find_by_reference(reference)) is not None:
            return existing
        unclear: str | None = None
        not_delivered = "not reachable"
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff(attempt - 1))
                if unclear is not None and (existing := self._look_again(reference)) is not None:
                    return existing
            try:
                response = self._send("POST", "/payments", body=body)
            except NotDelivered as error:
                not_delivered = str(error)
                continue
            except Unclear as error:
                unclear = str(error)
                continue
            return read(response)
        if unclear is None:
            raise GatewayUnavailable(
                f"Asaas could not be reached after {self._max_attempts} attempts ({not_delivered})"
            )
        self._sleep(self._backoff(self._max_attempts))
        if (existing := self._look_again(reference)) is not None:
            return existing
        raise GatewayUnavailable(
            f"no clear answer from Asaas for charge {reference} ({unclear}); it holds no payment for it yet",
            outcome_unknown=True,
        )

    def _look_again(self, reference: str) -> GatewayPayment | None:
        try:
            return self.find_by_reference(reference)
        except GatewayUnavailable as error:
            raise GatewayUnavailable(
                f"charge {reference} may have been created, and Asaas cannot be asked: {error}",
                outcome_unknown=True,
            ) from error

    def _read_card_answer(self, response: httpx.Response) -> GatewayPayment:
        if response.status_code == 400:
            errors = _errors(response)
            refusal = next(((code, text) for code, text in errors if _REFUSAL.search(_plain(f"{code} {text}"))), None)
            if refusal is not None:
                code, text = refusal
                hard, reason = classify_decline(code, text)
                raise CardDeclined(text or code, code=code, hard=hard, reason=reason)
        return self._read_manual_answer(response)

    def _read_manual_answer(self, response: httpx.Response) -> GatewayPayment:
        if not 200 <= response.status_code < 300:
            raise _rejection(response, "create payment")
        try:
            return _payment(_json_object(response))
        except GatewayUnavailable as error:
            # Asaas said yes and we cannot read what: the charge exists, so say the outcome is unknown.
            raise GatewayUnavailable(
                f"unreadable answer to a created payment: {error}", outcome_unknown=True
            ) from error

    def _pix_code(self, payment: GatewayPayment) -> PixCode:
        response, _ = self._call("GET", f"/payments/{_segment(payment.id)}/pixQrCode", retry_unclear=True)
        if response.status_code != 200:
            raise _rejection(response, f"PIX code of {payment.id}")
        data = _json_object(response)
        return PixCode(
            payload=_text(data, "payload"),
            encoded_image=_text(data, "encodedImage"),
            expiration=_optional_text(data, "expirationDate"),
        )

    def _boleto_code(self, payment: GatewayPayment) -> BoletoCode:
        path = f"/payments/{_segment(payment.id)}/identificationField"
        response, _ = self._call("GET", path, retry_unclear=True)
        if response.status_code != 200:
            raise _rejection(response, f"boleto line of {payment.id}")
        data = _json_object(response)
        return BoletoCode(
            identification_field=_text(data, "identificationField"),
            bank_slip_url=_optional_text(payment.raw, "bankSlipUrl"),
            nosso_numero=_optional_text(data, "nossoNumero"),
            bar_code=_optional_text(data, "barCode"),
        )

    def webhook_queues(self, timeout: float) -> list[WebhookQueue]:
        """Asaas's webhook configurations (`GET /v3/webhooks`), asked once within `timeout` seconds for the
        ops overview: `interrupted` is a queue paused after 15 failed deliveries ("fila pausada")."""
        try:
            response = self._transport.once("GET", "/webhooks", params={"limit": "100"}, timeout=timeout)
        except httpx.HTTPError as error:
            raise GatewayUnavailable(f"GET /webhooks: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise _rejection(response, "list webhooks")
        items = _json_object(response).get("data")
        if not isinstance(items, list):
            raise GatewayUnavailable("Asaas listed webhooks without a data list")
        return [
            WebhookQueue(
                name=str(item.get("name") or item.get("id") or ""),
                url=str(item.get("url") or ""),
                enabled=item.get("enabled") is not False,
                interrupted=item.get("interrupted") is True,
                penalized=int(item.get("penalizedRequestsCount") or 0),
            )
            for item in items
            if isinstance(item, Mapping)
        ]
