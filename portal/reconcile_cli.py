"""``flask --app wsgi reconcile --channel C --date D [--file F]``: reconcile one channel's
statement of one day by hand, from the channel or from a file, with a progress bar. Running it
again with the same file changes nothing; a different file is a new version of the day."""

from __future__ import annotations

import gzip
import io
from datetime import date
from pathlib import Path

import click
from flask.cli import with_appcontext

from payments.channels.base import ChannelError
from payments.reconcile import service as reconcile
from portal import context
from portal.billing_cli import DayType, OneLineCommand
from portal.extensions import db
from portal.kernel.money import format_yuan
from portal.payment_channels import channels


def _estimate_lines(channel: str, data: bytes | Path | None) -> int:
    """Detail lines of a WeChat bill (newlines less header and summary); 0 when unknown."""
    if channel != "wechat" or data is None:
        return 0
    count = 0
    try:
        with gzip.open(data if isinstance(data, Path) else io.BytesIO(data)) as f:
            while chunk := f.read(1 << 20):
                count += chunk.count(b"\n")
    except (OSError, EOFError):
        return 0  # the parser says what is wrong with it
    return max(count - 3, 0)


@click.command("reconcile", cls=OneLineCommand)
@click.option("--channel", "channel_name", required=True,
              type=click.Choice(sorted(reconcile.PARSERS)), help="wechat, alipay or stripe.")
@click.option("--date", "day", required=True, type=DayType(), help="Statement day, YYYY-MM-DD.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A statement file as the channel sends it, instead of fetching it.")
@with_appcontext
def reconcile_command(channel_name: str, day: date, path: Path | None) -> None:
    """Fetch (or read) a channel's statement of a day, keep it, and match it."""
    settings = context.settings()
    channel = channels().get(channel_name)
    if path is None and channel is None:
        raise click.ClickException(f"channel {channel_name} is not enabled; pass --file")
    try:
        source = path if path is not None else channel.fetch_statement(day)  # type: ignore[union-attr]
        data = source if isinstance(source, Path) or source is None else source.content
        with click.progressbar(length=_estimate_lines(channel_name, data),
                               label=f"{channel_name} {day}") as bar:
            result = reconcile.run_day(db.session, context.clock(), channel_name, day, source,
                                       directory=settings.reconcile_dir, zone=settings.zone,
                                       channel=channel, progress=bar.update)
    except ChannelError as exc:
        raise click.ClickException(f"{channel_name} {day}: {exc}") from None
    st = result.statement
    if not result.new:
        click.echo(f"{channel_name} {day}: this statement (version {st.version}, sha256 "
                   f"{st.sha256[:12]}) was reconciled before; nothing changed.")
        return
    found = ", ".join(f"{kind} {n}" for kind, n in sorted(result.found.items())) or "none"
    click.echo(f"{channel_name} {day} version {st.version}: {st.line_count} lines, payments "
               f"{format_yuan(st.payment_fen)} yuan, refunds {format_yuan(st.refund_fen)} yuan; "
               f"differences: {found}; 补单 {result.auto_resolved}.")
