"""The rules of payment plans that an operator may change (settings: ``DIANFEI_PLANS__*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PlanPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_total_fen: int = Field(default=10_000, ge=1)             # 100 yuan
    max_total_fen: int = Field(default=50_000_000, ge=1)         # 500,000 yuan
    # a collector's terms for more than this need a supervisor's approval
    approval_threshold_fen: int = Field(default=2_000_000, ge=0)  # 20,000 yuan
    default_lookback_days: int = Field(default=365, ge=0)  # no defaulted plan this recently
    grace_days: int = Field(default=10, ge=0, le=90)       # after a due date, before default
    first_due_within_days: int = Field(default=60, ge=1, le=365)
    max_installments: int = Field(default=12, ge=2, le=12)
    residents_allowed: bool = True  # residents may ask when they declare hardship
    reminder_days: int = Field(default=3, ge=0, le=30)     # installment-due message this early
    attachment_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=9 * 1024 * 1024)
    attachment_dir: Path | None = None  # default: instance/attachments/plans (not served)
