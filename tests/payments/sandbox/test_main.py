"""``python -m payments.sandbox``: keys made under instance/sandbox, the composed app served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from payments.sandbox import __main__ as sandbox_main


def test_init_makes_the_keys_and_serve_runs_the_composed_app(tmp_path: Path,
                                                              monkeypatch) -> None:
    served: list[tuple[Any, ...]] = []
    monkeypatch.setattr(sandbox_main, "ROOT", tmp_path)
    monkeypatch.setattr(sandbox_main, "run_simple",
                        lambda host, port, app, threaded: served.append((host, port, threaded)))
    assert sandbox_main.main(["--init"]) == 0
    assert (tmp_path / "instance" / "sandbox" / "keys.json").exists() and served == []
    monkeypatch.setenv("DIANFEI_SANDBOX_URL", "http://127.0.0.1:5199")
    assert sandbox_main.main([]) == 0
    assert served == [("127.0.0.1", 5199, True)]
