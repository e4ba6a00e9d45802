"""Customers at the simulated Asaas: create, list (by externalReference or cpfCnpj, newest first), get."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from regua.sandbox.simulator.common import SimulatorError, listing

# Text fields a customer is created with and answered back as given (null when not given).
_ECHOED = (
    "email",
    "company",
    "phone",
    "mobilePhone",
    "address",
    "addressNumber",
    "complement",
    "province",
    "postalCode",
    "additionalEmails",
    "externalReference",
    "observations",
    "municipalInscription",
    "stateInscription",
)


@dataclass
class Customer:
    id: str
    name: str
    cpf_cnpj: str
    created: date
    fields: dict[str, str | None] = field(default_factory=dict)
    notification_disabled: bool = False

    @property
    def external_reference(self) -> str | None:
        return self.fields.get("externalReference")

    def to_json(self) -> dict[str, object]:
        echoed = {name: self.fields.get(name) for name in _ECHOED}
        return {
            "object": "customer",
            "id": self.id,
            "dateCreated": self.created.isoformat(),
            "name": self.name,
            "email": echoed["email"],
            "company": echoed["company"],
            "phone": echoed["phone"],
            "mobilePhone": echoed["mobilePhone"],
            "address": echoed["address"],
            "addressNumber": echoed["addressNumber"],
            "complement": echoed["complement"],
            "province": echoed["province"],
            "postalCode": echoed["postalCode"],
            "cpfCnpj": self.cpf_cnpj,
            "personType": "FISICA" if len(self.cpf_cnpj) == 11 else "JURIDICA",
            "deleted": False,
            "additionalEmails": echoed["additionalEmails"],
            "externalReference": echoed["externalReference"],
            "notificationDisabled": self.notification_disabled,
            "observations": echoed["observations"],
            "municipalInscription": echoed["municipalInscription"],
            "stateInscription": echoed["stateInscription"],
            "canDelete": True,
            "cannotBeDeletedReason": None,
            "canEdit": True,
            "cannotEditReason": None,
            "city": None,
            "cityName": None,
            "state": None,
            "country": "Brasil",
        }


def valid_document(digits: str) -> bool:
    """A CPF (11 digits) or CNPJ (14) whose check digits hold and that is not one digit repeated."""
    if len(digits) not in (11, 14) or len(set(digits)) == 1:
        return False
    if len(digits) == 11:
        weights = [list(range(10, 1, -1)), list(range(11, 1, -1))]
    else:
        weights = [[5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]]
    for place, weight in enumerate(weights):
        size = len(digits) - 2 + place
        remainder = sum(int(d) * w for d, w in zip(digits[:size], weight, strict=True)) % 11
        expected = 0 if remainder < 2 else 11 - remainder
        if int(digits[size]) != expected:
            return False
    return True


class CustomerBook:
    """The customers, under their own lock (no payment rule reads them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._customers: dict[str, Customer] = {}
        self._issued = 0

    def create(self, body: Mapping[str, Any], today: date) -> dict[str, object]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SimulatorError(400, "invalid_name", "O campo name deve ser informado.")
        document = "".join(ch for ch in str(body.get("cpfCnpj") or "") if ch.isdigit())
        if not valid_document(document):
            raise SimulatorError(400, "invalid_object", "O CPF/CNPJ informado é inválido.")
        fields = {key: value for key in _ECHOED if isinstance(value := body.get(key), str) and value}
        with self._lock:
            self._issued += 1
            customer = Customer(
                id=f"cus_{self._issued:012d}",
                name=name.strip(),
                cpf_cnpj=document,
                created=today,
                fields=dict(fields),
                notification_disabled=body.get("notificationDisabled") is True,
            )
            self._customers[customer.id] = customer
            return customer.to_json()

    def search(self, params: Mapping[str, str]) -> dict[str, object]:
        wanted = {key: params[key] for key in ("externalReference", "cpfCnpj") if key in params}
        with self._lock:
            found = [
                customer
                for customer in reversed(self._customers.values())
                if wanted.get("externalReference", customer.external_reference) == customer.external_reference
                and wanted.get("cpfCnpj", customer.cpf_cnpj) == customer.cpf_cnpj
            ]
            return listing(found, params, Customer.to_json)

    def get(self, customer_id: str) -> dict[str, object]:
        with self._lock:
            customer = self._customers.get(customer_id)
            if customer is None:
                raise SimulatorError(404, "not_found", f"Cliente {customer_id} não encontrado.")
            return customer.to_json()

    def all(self) -> list[dict[str, object]]:
        with self._lock:
            return [customer.to_json() for customer in self._customers.values()]

    def clear(self) -> None:
        with self._lock:
            self._customers.clear()
