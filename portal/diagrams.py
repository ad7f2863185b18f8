"""The README's state diagrams, generated from the state machines' own tables.

``python -m portal.diagrams README.md`` rewrites every block between
``<!-- state:NAME -->`` and ``<!-- /state:NAME -->``; a test fails when the README drifts.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from payments.states import ORDER_MACHINE, REFUND_MACHINE
from portal.bills.models import BILL_MACHINE
from portal.disputes.models import DISPUTE_MACHINE
from portal.kernel.statemachine import StateMachine
from portal.plans.models import PLAN_MACHINE
from portal.readings.models import READING_MACHINE

MACHINES: dict[str, StateMachine[Any]] = {m.name: m for m in (BILL_MACHINE, READING_MACHINE,
                                                                   ORDER_MACHINE, REFUND_MACHINE,
                                                                   PLAN_MACHINE, DISPUTE_MACHINE)}
BLOCK = re.compile(r"(<!-- state:(\w+) -->\n)(.*?)(<!-- /state:\2 -->)", re.S)


def render(text: str) -> str:
    def block(match: re.Match[str]) -> str:
        machine = MACHINES[match.group(2)]
        return f"{match.group(1)}```mermaid\n{machine.mermaid()}\n```\n{match.group(4)}"

    return BLOCK.sub(block, text)


def documented(text: str) -> set[str]:
    return {m.group(2) for m in BLOCK.finditer(text)}


if __name__ == "__main__":  # pragma: no cover
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
