"""The README is part of the product: its two commands and its diagrams must stay true."""

import re
from pathlib import Path

from portal import demo
from portal.diagrams import MACHINES, documented, render

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_state_diagrams_match_the_machines() -> None:
    assert documented(README) == set(MACHINES), "every state machine has a README diagram"
    assert render(README) == README, "run: python -m portal.diagrams README.md"


def test_readme_opens_with_exactly_two_commands() -> None:
    first_block = re.search(r"```(?:bash|sh)\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["make demo", "make test"]


def test_readme_lists_the_demo_sign_ins() -> None:
    for spec in demo.ACCOUNTS:
        assert spec.account_no in README
        if spec.phone:
            assert spec.phone in README
    assert demo.DEMO_PASSWORD in README
