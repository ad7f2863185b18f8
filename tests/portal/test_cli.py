import sqlalchemy as sa

from portal.bills.models import Bill
from portal.extensions import db


def test_demo_seed_runs_once_and_prints_the_sign_ins(app) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert "Demo data created." in first.output
    assert "13800000001" in first.output and "dianfei-demo" in first.output
    assert "户号 1100000005, holder 张伟, meter last 4 digits 5678" in first.output
    with app.app_context():
        bills = db.session.scalar(sa.select(sa.func.count()).select_from(Bill))
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0
    assert "already there; nothing changed" in second.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Bill)) == bills == 120


# --- flask staff create ---------------------------------------------------------------------

def _staff_create(app, *args, env=None, input=None):
    from portal.cli import STAFF_PASSWORD_ENV

    runner = app.test_cli_runner()
    return runner.invoke(args=["staff", "create", *args], input=input,
                         env={STAFF_PASSWORD_ENV: "", **(env or {})})


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_staff_create_first_admin_with_a_prompted_password(app) -> None:
    from portal.backoffice.models import StaffMember, StaffRole

    result = _staff_create(app, "--username", "Root", "--role", "admin",
                           input="a long password 1\na long password 1\n")
    assert result.exit_code == 0, result.output
    assert "Created admin 'root'" in result.output and "authenticator app" in result.output
    with app.app_context():
        member = db.session.scalar(sa.select(StaffMember))
        assert member.username == "root" and member.role is StaffRole.ADMIN
        assert member.must_change_password and member.districts == []
    mismatch = _staff_create(app, "--username", "root2", "--role", "admin",
                             input="a long password 1\nanother one 2\na long password 1\n"
                                   "a long password 1\n")
    assert "do not match" in mismatch.output and mismatch.exit_code == 0


def test_staff_create_reads_the_password_from_the_environment(app, demo) -> None:
    from portal.backoffice.models import StaffMember

    result = _staff_create(app, "--username", "li.na", "--role", "auditor",
                           "--district", "bj-dongcheng", "--district", "hz-xihu", "--name", "李娜",
                           env={"DIANFEI_STAFF_PASSWORD": "from the env 123"})
    assert result.exit_code == 0, result.output
    assert "authenticator" not in result.output
    with app.app_context():
        member = db.session.scalar(sa.select(StaffMember).filter_by(username="li.na"))
        assert member.display_name == "李娜"
        assert [d.code for d in member.districts] == ["bj-dongcheng", "hz-xihu"]


def test_staff_create_errors_are_one_clear_line(app, demo) -> None:
    env = {"DIANFEI_STAFF_PASSWORD": "from the env 123"}
    assert "username 'admin' is taken" in _one_error_line(
        _staff_create(app, "--username", "admin", "--role", "admin", env=env))
    assert "no district with code 'nowhere'" in _one_error_line(
        _staff_create(app, "--username", "x1", "--role", "reader", "--district", "nowhere",
                      env=env))
    assert "unknown role 'boss'" in _one_error_line(
        _staff_create(app, "--username", "x1", "--role", "boss", env=env))
    assert "needs at least one --district" in _one_error_line(
        _staff_create(app, "--username", "x1", "--role", "collector", env=env))
    assert "2 to 64 letters" in _one_error_line(
        _staff_create(app, "--username", "a b", "--role", "admin", env=env))
    assert "10 to 128 characters" in _one_error_line(
        _staff_create(app, "--username", "x1", "--role", "admin",
                      env={"DIANFEI_STAFF_PASSWORD": "short"}))


def test_demo_seed_creates_staff_per_role_in_both_districts(app) -> None:
    from portal.backoffice.models import StaffMember, StaffRole

    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert "bj-supervisor" in result.output and "DIANFEIDEMOSTAFFTOTPSECRET234567" in result.output
    with app.app_context():
        members = db.session.scalars(sa.select(StaffMember)).all()
        for code in ("bj-dongcheng", "hz-xihu"):
            roles = {m.role for m in members if code in {d.code for d in m.districts}}
            assert roles == set(StaffRole) - {StaffRole.ADMIN}
        assert [m.username for m in members if m.role is StaffRole.ADMIN] == ["admin"]
        assert not any(m.must_change_password for m in members)
        assert all((m.totp_secret is not None) == m.needs_totp for m in members)


def test_demo_seed_loads_the_shipped_tariffs_every_time(app) -> None:
    from billing_adapter.local.tariffs import TariffBook

    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed"]).exit_code == 0
    with app.app_context():
        assert TariffBook.from_db(db.session) == TariffBook.shipped()
