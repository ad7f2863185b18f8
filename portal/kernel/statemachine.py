"""State machines as data: an enum, a table of allowed moves, and a guarded UPDATE.

``move`` runs ``UPDATE t SET status = :to WHERE id = :id AND status = :from``: when two workers
(or ten copies of one notification) race, exactly one sees ``rowcount == 1``; the rest change
nothing and are told so. The README's diagrams are generated from the same tables
(``mermaid()``), and a test fails when they drift.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.kernel.errors import Conflict

S = TypeVar("S", bound=enum.Enum)


class IllegalTransition(Conflict):
    """The row is not in a state that allows this move (often: someone else moved it first)."""

    def __init__(self, machine: str, source: enum.Enum, target: enum.Enum) -> None:
        super().__init__(f"{machine}: {source.value} -> {target.value} is not an allowed move")
        self.source, self.target = source, target


class StateMachine(Generic[S]):
    def __init__(self, name: str, states: type[S], moves: Mapping[S, frozenset[S] | set[S]],
                 initial: S) -> None:
        unknown = {s for s in moves} | {t for ts in moves.values() for t in ts}
        if not unknown <= set(states):
            raise ValueError(f"{name}: moves name states outside {states.__name__}")
        self.name, self.states, self.initial = name, states, initial
        self.moves: dict[S, frozenset[S]] = {s: frozenset(moves.get(s, ())) for s in states}

    def can(self, source: S, target: S) -> bool:
        return target in self.moves[source]

    def check(self, source: S, target: S) -> None:
        if not self.can(source, target):
            raise IllegalTransition(self.name, source, target)

    def is_final(self, state: S) -> bool:
        return not self.moves[state]

    def move(self, session: Session, model: type[Any], row_id: int, source: S, target: S,
             status_attr: str = "status", **values: Any) -> bool:
        """Apply ``source -> target`` to one row if, and only if, it is still in ``source``.

        Returns True when this call made the move, False when the row had already moved on
        (a duplicate or a lost race). An illegal move raises before touching the database.
        """
        result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
            self._update(model, (source,), target, (model.id == row_id,), status_attr, values))
        return result.rowcount == 1

    def matching(self, model: type[Any], sources: Collection[S], target: S,
                 *where: sa.ColumnElement[bool], returning: Sequence[sa.ColumnElement[Any]],
                 status_attr: str = "status", **values: Any) -> sa.Update:
        """A guarded ``UPDATE ... RETURNING`` to run on a connection with parameters: ``source ->
        target`` for the one row matching ``where`` if it is in any of ``sources``. Build it
        once, on the model's table with ``sa.bindparam()`` for what varies, and run it with
        parameters: a statement object kept is neither rebuilt nor re-keyed for SQLAlchemy's
        compiled cache per call, and a Core statement skips the ORM's UPDATE handling (hot
        paths: every payment notification). ``where`` must pick a unique row (e.g. by a
        unique column)."""
        table = model.__table__
        return self._update(table, sources, target, where, status_attr,
                            values).returning(*returning)

    def _update(self, model: type[Any] | sa.Table, sources: Collection[S], target: S,
                where: Sequence[sa.ColumnElement[bool]], status_attr: str,
                values: dict[str, Any]) -> sa.Update:
        for source in sources:
            self.check(source, target)
        column = (model.c[status_attr] if isinstance(model, sa.Table)
                  else getattr(model, status_attr))
        ordered = [state for state in self.states if state in sources]  # one cached statement
        # equalities, not IN: an IN list is expanded into the SQL at every execution
        guard = sa.or_(*(column == state for state in ordered))
        return (sa.update(model).where(*where, guard)
                .values({status_attr: target, **values})
                .execution_options(synchronize_session=False))

    def mermaid(self) -> str:
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial.value}"]
        for source in self.states:
            for target in sorted(self.moves[source], key=lambda s: list(self.states).index(s)):
                lines.append(f"    {source.value} --> {target.value}")
            if self.is_final(source):
                lines.append(f"    {source.value} --> [*]")
        return "\n".join(lines)
