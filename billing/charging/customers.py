"""The account's customer at the gateway: created once, looked up first by the account id, then kept."""

from __future__ import annotations

from sqlalchemy.orm import Session, selectinload

from billing.models import Account
from billing.ports import Books, CustomerRequest, Gateway


def customer_request(account: Account) -> CustomerRequest:
    """What the gateway needs to know of an account: its id as the reference, name, document, a billing email."""
    emails = [contact.email for contact in account.contacts if contact.manage_payments]
    emails += [contact.email for contact in account.contacts]
    return CustomerRequest(
        reference=account.id, name=account.name, document=account.document, email=emails[0] if emails else None
    )


def ensure_gateway_customer(books: Books, gateway: Gateway, account_id: str) -> str | None:
    """The account's gateway customer id, creating the customer at the gateway if it has none (rule: SPEC 2).

    The gateway is asked outside any transaction; creating looks the customer up by our account id
    first, so a retry after a lost answer never makes two. None for an unknown account.
    """

    def read(session: Session) -> Account | None:
        return session.get(Account, account_id, options=[selectinload(Account.contacts)])

    account = books.read(read)
    if account is None:
        return None
    if account.gateway_customer_id:
        return account.gateway_customer_id
    customer_id = gateway.ensure_customer(customer_request(account))

    def keep(session: Session) -> str:
        stored = session.get(Account, account_id, with_for_update=True)
        assert stored is not None
        if not stored.gateway_customer_id:
            stored.gateway_customer_id = customer_id
        return stored.gateway_customer_id

    return books.transaction(keep)
