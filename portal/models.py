"""Every mapped model, imported in one place so the metadata (and Alembic) sees all tables."""

from billing_adapter.local.models import TariffVersionRow
from billing_adapter.local.postings import BillingPosting, BillingReversal
from notifications.consents import SubscribeConsent
from notifications.models import DeliveryAttempt, NotificationPreference
from payments.models import PaymentEvent, PaymentOrder, PaymentOrderBill, Refund
from portal.accounts.models import AccountLink, Customer, District, ElectricityAccount, Meter
from portal.backoffice.models import StaffMember
from portal.bills.models import Bill, BillLine
from portal.kernel.audit import AuditEntry
from portal.kernel.outbox import OutboxMessage
from portal.ledger.models import LedgerEntry
from portal.readings.models import Reading

__all__ = ["AccountLink", "AuditEntry", "Bill", "BillLine", "BillingPosting", "BillingReversal",
           "Customer", "DeliveryAttempt", "District", "ElectricityAccount", "LedgerEntry", "Meter",
           "NotificationPreference", "OutboxMessage",
           "PaymentEvent", "PaymentOrder", "PaymentOrderBill", "Reading", "Refund", "StaffMember",
           "SubscribeConsent", "TariffVersionRow"]
