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

A refused card is HTTP 400 with no payment created (Asaas does not persist a declined charge). Asaas
sends one generic code for every refusal (`invalid_creditCard`) and the reason only in the free-text
`description`, so declines are classified on the code and description together (lower case, accents
removed), the hard signs first:

    reason              matched in the code or the description              kind
    ------------------  --------------------------------------------------  ----
    expired             expired, expirad-, vencid-, validade                hard
    stolen_or_lost      stolen, lost, roubad-, furtad-, perda, perdid-,     hard
                        extraviad-
    invalid_token       token (an unknown or another customer's token)      hard
    invalid_card        invalid card number, cartao invalido,               hard
                        numero do/de cartao invalido
    card_canceled       cartao cancelado, canceled card, bloquead-, blocked hard
    insufficient_funds  insufficient, insuficiente, limite, limit           soft
    generic             anything else ("Transacao nao autorizada",          soft
                        "tente novamente")

A 400 counts as a refusal when its code mentions creditCard or its text says the transaction was not
authorized, refused, denied or declined; any other 400 (invalid customer, value, due date) is a
GatewayRejected. An unknown reason is soft on purpose: the dunning schedule retries it twice, then stops.

Hard declines are never retried with the same card; soft ones are retried on day 3 and day 5.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from billing.clock import Clock, SystemClock
from billing.money import json_cents, to_decimal_string
from billing.ports import (
    BoletoCode,
    CardCharge,
    CardDeclined,
    CustomerRequest,
    GatewayPayment,
    GatewayRefund,
    GatewayRejected,
    GatewayUnavailable,
    ManualCharge,
    PaymentNotFound,
    PixCode,
)
from regua.gateway.throttle import RateLimiter, Unlimited, retry_after_seconds
from regua.ops.gateway_queue import WebhookQueue

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)

_HARD_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("expired", re.compile(r"expired|expirad|vencid|validade")),
    ("stolen_or_lost", re.compile(r"stolen|\blost\b|roubad|furtad|\bperda\b|perdid|extraviad")),
    ("invalid_token", re.compile(r"token")),
    ("invalid_card", re.compile(r"invalid card number|cartao invalido|numero (do|de) cartao invalido")),
    ("card_canceled", re.compile(r"cartao cancelado|cancell?ed card|card cancell?ed|bloquead|blocked")),
)
_SOFT_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("insufficient_funds", re.compile(r"insufficient|insuficiente|\blimite?\b")),
)
_REFUSAL = re.compile(r"creditcard|nao autorizad|not authori[sz]ed|recusad|negad|declined|refused")


def classify_decline(code: str, description: str) -> tuple[bool, str]:
    """(hard, reason) for a card refusal, from the table in this module's docstring."""
    text = _plain(f"{code} {description}")
    for reason, pattern in _HARD_SIGNS:
        if pattern.search(text):
            return True, reason
    for reason, pattern in _SOFT_SIGNS:
        if pattern.search(text):
            return False, reason
    return False, "generic"


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).lower()


def cents_from_json(value: object) -> int:
    """A JSON money value (189.9, 5, "189.90") as centavos, exactly; anything else is refused."""
    return json_cents(value)


def money(amount_cents: int) -> Decimal:
    """Centavos as the exact decimal that `encode_json` writes as a JSON number (18990 -> 189.90)."""
    return Decimal(to_decimal_string(amount_cents))


def encode_json(value: object) -> bytes:
    """JSON with Decimal written digit for digit as a number; floats are refused (money never floats)."""
    return _encode(value).encode("utf-8")


def _encode(value: object) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a JSON number: {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("a float cannot carry money exactly: pass a Decimal")
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON keys are strings, not {key!r}")
            items.append(f"{json.dumps(key, ensure_ascii=False)}:{_encode(item)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def default_backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): 0.5, 1, 2, 4, then 8."""
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def throttled_backoff(times: int) -> float:
    """Seconds to wait after the `times`-th 429 in a row that named no wait: 1, 2, 4, 8, 16, then 30."""
    return float(min(2 ** (times - 1), 30))


class _NotDelivered(Exception):
    """The request surely did not reach Asaas (or Asaas refused to look at it): safe to send again."""


class _Unclear(Exception):
    """The request may have reached Asaas, but no answer we can read came back."""


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
        base = base_url.rstrip("/")
        base = base.removesuffix("/v3")
        self._api = f"{base}/v3"
        self._headers = {"access_token": api_key, "User-Agent": user_agent, "Accept": "application/json"}
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep
        self._limiter: RateLimiter = limiter or Unlimited()
        self._throttle_patience = throttle_patience
        self._wall_clock = wall_clock or SystemClock()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

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
            except _NotDelivered as error:
                not_delivered = str(error)
                continue
            except _Unclear as error:
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
            self._limiter.acquire()
            response = self._client.request(
                "GET", f"{self._api}/webhooks", params={"limit": "100"}, headers=self._headers, timeout=timeout
            )
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

    # -- one request, and the retry policy ------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        retry_unclear: bool,
    ) -> tuple[httpx.Response, bool]:
        """Send with retries: Asaas's answer (below 500, not 429), and whether an attempt was unclear."""
        unclear: str | None = None
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff(attempt - 1))
            try:
                return self._send(method, path, params=params, body=body), unclear is not None
            except _NotDelivered:
                continue
            except _Unclear as error:
                unclear = str(error)
                if not retry_unclear:
                    raise GatewayUnavailable(f"{method} {path}: {error}", outcome_unknown=True) from None
        raise GatewayUnavailable(
            f"{method} {path}: no answer after {self._max_attempts} attempts ({unclear or 'not reachable'})",
            outcome_unknown=unclear is not None and method != "GET",
        )

    def _send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> httpx.Response:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        waited, throttled = 0.0, 0
        while (response := self._send_once(method, path, params, body, headers)).status_code == 429:
            throttled += 1
            wait = self._throttled_wait(response, throttled)
            if waited + wait > self._throttle_patience:
                raise _NotDelivered(f"HTTP 429 (rate limited) {throttled} times, {waited:.1f} s waited")
            self._sleep(wait)
            waited += wait
        if response.status_code >= 500:
            raise _Unclear(f"HTTP {response.status_code}")
        return response

    def _throttled_wait(self, response: httpx.Response, throttled: int) -> float:
        """How long Asaas asked us to wait (Retry-After, else RateLimit-Reset), else the exponential backoff."""
        now = self._wall_clock.now()
        for header in ("Retry-After", "RateLimit-Reset"):
            if (seconds := retry_after_seconds(response.headers.get(header), now)) is not None:
                return seconds
        return throttled_backoff(throttled)

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        self._limiter.acquire()
        try:
            return self._client.request(method, self._api + path, params=params, content=body, headers=headers)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.UnsupportedProtocol,
        ) as error:
            raise _NotDelivered(f"{type(error).__name__}: {error}") from error
        except httpx.TransportError as error:
            raise _Unclear(f"{type(error).__name__}: {error}") from error


# -- reading Asaas's answers ------------------------------------------------------------------------


def _segment(identifier: str) -> str:
    if not identifier:
        raise ValueError("an empty payment id")
    return quote(identifier, safe="")


def _json_object(response: httpx.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise GatewayUnavailable(
            f"Asaas answered HTTP {response.status_code} with no JSON", outcome_unknown=True
        ) from None
    if not isinstance(data, dict):
        raise GatewayUnavailable("Asaas answered with JSON that is not an object", outcome_unknown=True)
    return data


def _errors(response: httpx.Response) -> tuple[tuple[str, str], ...]:
    try:
        data = response.json()
    except ValueError:
        return ()
    items = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        (str(item.get("code") or ""), str(item.get("description") or "")) for item in items if isinstance(item, dict)
    )


def _rejection(response: httpx.Response, what: str) -> GatewayRejected:
    errors = _errors(response)
    detail = "; ".join(f"{code}: {text}" for code, text in errors) or response.reason_phrase
    message = f"{what}: Asaas answered HTTP {response.status_code} ({detail})"
    kind = PaymentNotFound if response.status_code == 404 else GatewayRejected
    return kind(message, status_code=response.status_code, errors=errors)


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise GatewayUnavailable(f"Asaas's answer lacks {key}", outcome_unknown=True)
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _date(data: Mapping[str, Any], *keys: str) -> date | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            try:
                return date.fromisoformat(value[:10])  # "2026-12-01" or "2026-12-01 10:28:40"
            except ValueError:
                raise GatewayUnavailable(f"Asaas sent {key}={value!r}", outcome_unknown=True) from None
    return None


def _installment_number(payment: GatewayPayment) -> int:
    number = payment.raw.get("installmentNumber")
    return number if isinstance(number, int) and not isinstance(number, bool) else 0


def _payment(data: Mapping[str, Any]) -> GatewayPayment:
    try:
        amount = cents_from_json(data.get("value"))
    except ValueError as error:
        raise GatewayUnavailable(f"payment with an unreadable value: {error}", outcome_unknown=True) from None
    reference = data.get("externalReference")
    installment = data.get("installment")
    return GatewayPayment(
        id=_text(data, "id"),
        status=_text(data, "status"),
        amount_cents=amount,
        billing_type=_optional_text(data, "billingType") or "UNDEFINED",
        external_reference=reference if isinstance(reference, str) and reference else None,
        due_date=_date(data, "dueDate"),
        confirmed_on=_date(data, "confirmedDate"),
        paid_on=_date(data, "clientPaymentDate", "paymentDate"),  # the day the customer paid; paymentDate is the credit
        invoice_url=_optional_text(data, "invoiceUrl"),
        deleted=data.get("deleted") is True,
        installment_id=installment if isinstance(installment, str) and installment else None,
        raw=dict(data),
    )
