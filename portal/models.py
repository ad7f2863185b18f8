"""Every mapped model, imported in one place so the metadata (and Alembic) sees all tables."""

from billing_adapter.local.models import TariffVersionRow
from billing_adapter.local.postings import BillingPosting, BillingReversal
from notifications.consents import SubscribeConsent
from notifications.models import DeliveryAttempt, NotificationPreference, StaffMessage
from payments.models import PaymentEvent, PaymentOrder, PaymentOrderBill, Refund
from payments.reconcile.models import Difference, DifferenceNote, Statement, StatementLine
from portal.accounts.models import AccountLink, Customer, District, ElectricityAccount, Meter
from portal.backoffice.models import StaffMember
from portal.bills.models import Bill, BillLine
from portal.disputes import service as _disputes  # noqa: F401  (registers the disputes hold)
from portal.disputes.models import Dispute, DisputeAttachment, DisputeEvent
from portal.kernel.audit import AuditEntry
from portal.kernel.outbox import OutboxMessage
from portal.ledger.models import LedgerEntry
from portal.plans.models import PaymentPlan, PlanBill, PlanInstallment, PlanOrder
from portal.readings.models import Reading

__all__ = ["AccountLink", "AuditEntry", "Bill", "BillLine", "BillingPosting", "BillingReversal",
           "Customer", "DeliveryAttempt", "Difference", "DifferenceNote", "Dispute",
           "DisputeAttachment", "DisputeEvent", "District", "ElectricityAccount", "LedgerEntry",
           "Meter", "NotificationPreference", "OutboxMessage", "PaymentEvent", "PaymentOrder",
           "PaymentOrderBill", "PaymentPlan", "PlanBill", "PlanInstallment", "PlanOrder", "Reading",
           "Refund", "StaffMember", "StaffMessage", "Statement", "StatementLine",
           "SubscribeConsent", "TariffVersionRow"]
