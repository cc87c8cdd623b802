"""Advertisers decide on many conversions at once with a CSV file: `txn_id,status[,amount][,reason]`.

Three steps, each a pure function of the text and the database: `parse` reads the file,
`plan` says per row what would happen (or why it cannot) and changes nothing, `apply` re-plans
the same text against the database as it is now and carries out the rows that are still valid,
through the same functions as the review page (review.approve_row, reject_row, reverse_row).
The preview carries the text back to apply sealed with an HMAC, so what is applied is exactly
what was previewed.

Amounts in the file are read in the uploader's locale (the request's, server/core/locale.py), as on every
form: "12,50" is 12.50 everywhere, and "1,250" is refused on its line unless the locale decides. The
seal binds that locale too, so apply reads every amount exactly as the preview showed it. A file
whose first line has more semicolons than commas is read with ';' between columns (what Excel
writes in French, Italian, German and Spanish, where the comma is the decimal mark)."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.accounts.identity import CurrentUser
from server.audit import service as audit
from server.campaigns.tables import PayoutModel
from server.conversions import review
from server.conversions.tables import Conversion, ConversionStatus
from server.core import clock, db, i18n, money
from server.core import locale as locales
from server.core.errors import Invalid
from server.core.i18n import _, _l
from server.ledger import service as ledger
from server.ledger.tables import AccountKind

MAX_BYTES = 1024 * 1024  # 1 MB of CSV, whether uploaded or pasted
MAX_ROWS = 10_000
# The request carries the file, or the pasted text, or the sealed text on apply (base64: 4/3 of it).
BODY_LIMIT = 3 * MAX_BYTES
MAX_TXN_ID = 100
COLUMNS = ("txn_id", "status", "amount", "reason")
_LOOKUP_CHUNK = 500

P, A, R, V = (
    ConversionStatus.pending.value,
    ConversionStatus.approved.value,
    ConversionStatus.rejected.value,
    ConversionStatus.reversed.value,
)
# Every word a person may write in the status column, as the action it asks for.
# A conversion's status as a sentence of a row's message says it ("This conversion is approved").
STATUS_WORDS = {
    P: _l("pending"),
    A: _l("approved"),
    R: _l("rejected"),
    V: _l("reversed"),
}
WORDS = {
    "approved": "approve",
    "approve": "approve",
    "rejected": "reject",
    "reject": "reject",
    "reversed": "reverse",
    "reverse": "reverse",
}
# (action, current status) -> the status it leads to; None: already there, nothing to do.
# Rejecting an approved conversion can only mean reversing it (the sale was refunded), and
# reversing one not yet approved can only mean rejecting it: no money has moved.
TRANSITIONS: dict[tuple[str, str], str | None] = {
    ("approve", P): A,
    ("approve", A): None,
    ("reject", P): R,
    ("reject", A): V,
    ("reject", R): None,
    ("reject", V): None,
    ("reverse", P): R,
    ("reverse", A): V,
    ("reverse", R): None,
    ("reverse", V): None,
}


@dataclass(frozen=True)
class Line:
    """One data row of the file as written. `number` is the line in the file where it starts."""

    number: int
    txn_id: str
    status: str
    amount: str = ""
    reason: str = ""


@dataclass
class Row:
    """What one line will do (preview) or did (apply)."""

    line: int
    txn_id: str
    outcome: str  # approve | reject | reverse | none | error; after apply: what happened
    message: str
    conversion_id: int | None = None
    campaign_name: str = ""
    currency: str = ""
    charge_minor: int = 0  # what approving it charges the advertiser
    refund_minor: int = 0  # what reversing it gives back
    reason: str = ""
    new_sale_minor: int | None = None  # a corrected RevShare sale amount, applied before approval
    conversion: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Plan:
    rows: list[Row]
    campaign_id: int | None
    reason: str

    @property
    def errors(self) -> list[Row]:
        return [r for r in self.rows if r.outcome == "error"]

    @property
    def actionable(self) -> list[Row]:
        return [r for r in self.rows if r.outcome in {"approve", "reject", "reverse"}]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("approve", "reject", "reverse", "none", "error"), 0)
        for row in self.rows:
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
        return counts

    def totals(self) -> dict[str, dict[str, int]]:
        """Per currency: what approving charges and reversing refunds, in minor units."""
        totals: dict[str, dict[str, int]] = defaultdict(lambda: {"charge": 0, "refund": 0})
        for row in self.actionable:
            totals[row.currency]["charge"] += row.charge_minor
            totals[row.currency]["refund"] += row.refund_minor
        return dict(totals)


@dataclass
class Applied:
    rows: list[Row]
    decision: review.Decision
    errors: int
    unchanged: int  # rows that asked for the status the conversion already had


# --- reading the file -----------------------------------------------------------------------------


def read_input(data: bytes, pasted: str) -> str:
    """The CSV text from an uploaded file's bytes or from the pasted text (one of the two)."""
    pasted = pasted or ""
    if data and pasted.strip():
        raise Invalid(_("Upload a file or paste the rows, not both."), field="file")
    if data:
        if len(data) > MAX_BYTES:
            raise Invalid(
                _("The file is larger than %(kb)s KB: split it into smaller files.", kb=MAX_BYTES // 1024), field="file"
            )
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid(
                _("The file is not UTF-8 text: save it as “CSV UTF-8” and upload it again."), field="file"
            ) from None
    if len(pasted.encode()) > MAX_BYTES:
        raise Invalid(
            _("The pasted text is larger than %(kb)s KB: upload it in parts.", kb=MAX_BYTES // 1024), field="text"
        )
    text = pasted.removeprefix("\ufeff")
    if not text.strip():
        raise Invalid(_("Choose a CSV file or paste its rows: txn_id,status[,amount][,reason]."), field="file")
    return text


def _header(cells: list[str]) -> dict[str, int] | None:
    """Column positions named by a header row, or None when the first row is data."""
    names = [c.strip().lower() for c in cells]
    if not names or names[0] not in COLUMNS:
        return None
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise Invalid(
            _(
                "The header names a column “%(name)s”; the columns are %(columns)s.",
                name=unknown[0][:40],
                columns=", ".join(COLUMNS),
            ),
            field="file",
        )
    if len(set(names)) != len(names):
        raise Invalid(_("The header names a column twice."), field="file")
    if "txn_id" not in names or "status" not in names:
        raise Invalid(_("The header needs at least the columns txn_id and status."), field="file")
    return {n: i for i, n in enumerate(names)}


def delimiter(text: str) -> str:
    """';' when the first non-blank line has more semicolons than commas (12,50 needs no quotes then)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return ";" if first.count(";") > first.count(",") else ","


def parse(text: str) -> tuple[list[Line], list[Row]]:
    """The data lines of the file, and the lines that cannot be read at all (too many columns).
    A header row is optional: without one the columns are txn_id,status,amount,reason in order.
    Raises Invalid for a file that is not a CSV this page understands (nothing is applied)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter(text), skipinitialspace=True)
    lines: list[Line] = []
    errors: list[Row] = []
    columns: dict[str, int] | None = None
    first = True
    start = 1
    try:
        for cells in reader:
            number, start = start, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue  # blank lines (and a trailing newline) are not rows
            if first:
                first = False
                columns = _header(cells)
                if columns is not None:
                    continue
            if len(lines) + len(errors) >= MAX_ROWS:
                raise Invalid(
                    _(
                        "The file has more than %(rows)s rows: split it into smaller files.",
                        rows=i18n.number_text(MAX_ROWS),
                    ),
                    field="file",
                )
            positions = columns or {name: i for i, name in enumerate(COLUMNS)}
            txn_id = cells[positions["txn_id"]].strip() if positions["txn_id"] < len(cells) else ""
            if len(cells) > len(positions):
                errors.append(
                    Row(
                        number,
                        txn_id,
                        "error",
                        _(
                            "This line has %(found)s columns; at most %(most)s are expected (%(columns)s). "
                            "Put a reason with commas in double quotes.",
                            found=len(cells),
                            most=len(positions),
                            columns=", ".join(positions),
                        ),
                    )
                )
                continue

            def cell(name: str, cells: list[str] = cells, positions: dict[str, int] = positions) -> str:
                at = positions.get(name)
                return cells[at].strip() if at is not None and at < len(cells) else ""

            lines.append(Line(number, txn_id, cell("status"), cell("amount"), cell("reason")))
    except csv.Error as exc:
        raise Invalid(
            _("Line %(line)s cannot be read as CSV (%(error)s).", line=start, error=exc), field="file"
        ) from None
    if not lines and not errors:
        raise Invalid(
            _("The file has no rows: one conversion per line, txn_id,status[,amount][,reason]."), field="file"
        )
    return lines, errors


# --- planning -------------------------------------------------------------------------------------


async def _conversions(advertiser: CurrentUser, campaign_id: int | None, txn_ids: list[str]) -> dict[str, list[dict]]:
    """The advertiser's conversions with these txn ids (in one campaign, or in any of theirs)."""
    found: dict[str, list[dict]] = defaultdict(list)
    for at in range(0, len(txn_ids), _LOOKUP_CHUNK):
        query = Conversion.select(
            Conversion.id,
            Conversion.txn_id,
            Conversion.campaign,
            Conversion.publisher,
            Conversion.currency,
            Conversion.status,
            Conversion.sale_amount_minor,
            Conversion.advertiser_amount_minor,
            Conversion.publisher_amount_minor,
            Conversion.network_amount_minor,
            Conversion.hold_until,
            Conversion.released_at,
            Conversion.campaign.name.as_alias("campaign_name"),
            Conversion.campaign.advertiser.as_alias("advertiser_id"),
            Conversion.goal.name.as_alias("goal_name"),
            Conversion.goal.payout_model.as_alias("payout_model"),
            Conversion.goal.advertiser_amount.as_alias("goal_advertiser_amount"),
            Conversion.goal.publisher_amount.as_alias("goal_publisher_amount"),
        ).where(
            Conversion.txn_id.is_in(txn_ids[at : at + _LOOKUP_CHUNK]), Conversion.campaign.advertiser == advertiser.id
        )
        if campaign_id is not None:
            query = query.where(Conversion.campaign == campaign_id)
        for row in await query.order_by(Conversion.id):
            found[row["txn_id"]].append(row)
    return found


def _status(status: str) -> str:
    """A conversion's status in words, in the reader's language."""
    return str(STATUS_WORDS.get(status, status))


def _show(amount: int, currency: str) -> str:
    return money.display_local(amount, currency)  # the preview echoes amounts in the uploader's locale


def _plan_line(line: Line, matches: list[dict], default_reason: str, campaign_name: str | None) -> Row:
    row = Row(line.number, line.txn_id, "error", "")

    def error(message: str) -> Row:
        row.outcome, row.message = "error", message
        return row

    action = WORDS.get(line.status.lower())
    if action is None:
        if not line.status:
            return error(_("The status is empty: write approved, rejected or reversed."))
        return error(_("The status is “%(status)s”: write approved, rejected or reversed.", status=line.status[:40]))
    if not matches:
        if campaign_name is not None:
            return error(
                _("No conversion of yours in campaign “%(campaign)s” has this txn id.", campaign=campaign_name)
            )
        return error(_("No conversion of yours has this txn id."))
    if len(matches) > 1:
        names = ", ".join(sorted({m["campaign_name"] for m in matches}))
        return error(
            _(
                "This txn id is in %(count)s of your campaigns (%(names)s): choose the campaign and upload again.",
                count=len(matches),
                names=names,
            )
        )
    conversion = matches[0]
    row.conversion, row.conversion_id = conversion, conversion["id"]
    row.campaign_name, row.currency = conversion["campaign_name"], conversion["currency"]
    status, currency = conversion["status"], conversion["currency"]
    if action != "approve":
        row.reason = line.reason or default_reason
        if len(row.reason) > review.REASON_MAX:
            return error(_("The reason is longer than %(max)s characters.", max=review.REASON_MAX))
    if line.amount:
        if action != "approve":
            return error(
                _("An amount corrects a sale before it is approved: leave it empty when rejecting or reversing.")
            )
        if conversion["payout_model"] != PayoutModel.revshare.value:
            flat = _show(conversion["advertiser_amount_minor"], currency)
            return error(
                _(
                    "Goal “%(goal)s” pays a flat %(amount)s per conversion, not a share of the sale: "
                    "leave the amount empty.",
                    goal=conversion["goal_name"],
                    amount=flat,
                )
            )
        try:
            label = _("The amount “%(amount)s”", amount=line.amount[:20])
            sale = money.parse_amount(line.amount, currency, field="amount", label=label)
        except Invalid as exc:
            return error(exc.message)
        original = conversion["sale_amount_minor"] or 0
        if sale != original:
            if status != P:
                return error(
                    _(
                        "This conversion is %(status)s at a sale of %(sale)s: an amount can only be corrected "
                        "before approval.",
                        status=_status(status),
                        sale=_show(original, currency),
                    )
                )
            if sale > original:
                return error(
                    _(
                        "The amount %(amount)s is more than the sale reported (%(sale)s): a correction can only "
                        "lower it.",
                        amount=_show(sale, currency),
                        sale=_show(original, currency),
                    )
                )
            price, _publisher, _network = money.revshare_split(
                sale, conversion["goal_advertiser_amount"], conversion["goal_publisher_amount"]
            )
            if price == 0:
                return error(
                    _(
                        "At %(amount)s the conversion would cost nothing: reject it instead.",
                        amount=_show(sale, currency),
                    )
                )
            row.new_sale_minor = sale
    target = TRANSITIONS.get((action, status), "?")
    if target is None:
        row.outcome, row.message = "none", _("no change: already %(status)s", status=_status(status))
        return row
    if target == "?":
        return error(_("This conversion is %(status)s: it cannot be approved any more.", status=_status(status)))
    if target == R:
        if not row.reason:
            return error(_("A reason is required to reject: add a reason column or fill in the reason field."))
        row.outcome, row.message = "reject", _("pending → rejected, nothing charged")
    elif target == V:
        if not row.reason:
            return error(_("A reason is required to reverse: add a reason column or fill in the reason field."))
        row.outcome, row.refund_minor = "reverse", conversion["advertiser_amount_minor"]
        row.message = _("approved → reversed, refunds %(amount)s", amount=_show(row.refund_minor, currency))
    else:
        row.outcome = "approve"
        if row.new_sale_minor is not None:
            price, _publisher, _network = money.revshare_split(
                row.new_sale_minor, conversion["goal_advertiser_amount"], conversion["goal_publisher_amount"]
            )
            row.charge_minor = price
            row.message = _(
                "pending → approved at a corrected sale of %(sale)s (was %(was)s), charges %(price)s instead of "
                "%(before)s",
                sale=_show(row.new_sale_minor, currency),
                was=_show(conversion["sale_amount_minor"], currency),
                price=_show(price, currency),
                before=_show(conversion["advertiser_amount_minor"], currency),
            )
        else:
            row.charge_minor = conversion["advertiser_amount_minor"]
            row.message = _("pending → approved, charges %(amount)s", amount=_show(row.charge_minor, currency))
    return row


async def plan(
    advertiser: CurrentUser, text: str, *, campaign_id: int | None, reason: str = "", campaign_name: str = ""
) -> Plan:
    """What applying `text` would do now, row by row, in file order. Changes nothing."""
    reason = (reason or "").strip()
    if len(reason) > review.REASON_MAX:
        raise Invalid(_("The reason is limited to %(max)s characters.", max=review.REASON_MAX), field="reason")
    lines, unreadable = parse(text)
    wanted = sorted({ln.txn_id for ln in lines if ln.txn_id and len(ln.txn_id) <= MAX_TXN_ID})
    found = await _conversions(advertiser, campaign_id, wanted)
    in_campaign = campaign_name if campaign_id is not None else None
    seen: dict[str, int] = {}
    rows = list(unreadable)
    for line in lines:
        if not line.txn_id:
            rows.append(Row(line.number, "", "error", _("The txn id is empty.")))
        elif len(line.txn_id) > MAX_TXN_ID or not line.txn_id.isprintable():
            rows.append(
                Row(
                    line.number,
                    line.txn_id[:MAX_TXN_ID],
                    "error",
                    _("No txn id is longer than %(max)s characters or has control characters.", max=MAX_TXN_ID),
                )
            )
        elif line.txn_id in seen:
            rows.append(
                Row(
                    line.number,
                    line.txn_id,
                    "error",
                    _(
                        "Line %(line)s already names this txn id: each conversion may appear once.",
                        line=seen[line.txn_id],
                    ),
                )
            )
        else:
            seen[line.txn_id] = line.number
            rows.append(_plan_line(line, found.get(line.txn_id, []), reason, in_campaign))
    rows.sort(key=lambda r: r.line)
    return Plan(rows=rows, campaign_id=campaign_id, reason=reason)


async def balances(advertiser: CurrentUser, currencies: list[str]) -> dict[str, int]:
    return {c: await ledger.balance(AccountKind.advertiser_balance, c, advertiser.id) for c in sorted(currencies)}


# --- sealing the previewed text ---------------------------------------------------------------------


def seal(key: bytes, advertiser_id: int, campaign_id: int | None, reason: str, text: str) -> tuple[str, str]:
    """(the text as base64, its HMAC): carried by the preview's Apply form. Base64 because browsers
    rewrite line breaks in form fields; the MAC binds the text to this advertiser, campaign and reason."""
    content = base64.b64encode(text.encode()).decode()
    return content, _mac(key, advertiser_id, campaign_id, reason, content)


def unseal(key: bytes, advertiser_id: int, campaign_id: int | None, reason: str, content: str, digest: str) -> str:
    expected = _mac(key, advertiser_id, campaign_id, reason, content)
    if not hmac.compare_digest(expected, digest or ""):
        raise Invalid(
            _(
                "This upload changed after its preview (or the preview expired, or your browser's language "
                "changed): upload the file again."
            ),
            field="file",
        )
    try:
        return base64.b64decode(content, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):  # pragma: no cover - sealed by us
        raise Invalid(_("Upload the file again."), field="file") from None


def _mac(key: bytes, advertiser_id: int, campaign_id: int | None, reason: str, content: str) -> str:
    # The locale the amounts were read in at preview: applying under another would read them differently.
    message = "\n".join(
        (
            "conversion-upload",
            str(advertiser_id),
            str(campaign_id or ""),
            reason,
            locales.tag(locales.current()),
            content,
        )
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


# --- applying -------------------------------------------------------------------------------------


async def _reprice(advertiser: CurrentUser, row: Row) -> bool:
    """Lower a pending RevShare conversion's sale amount, priced by the one rounding rule. False if
    the conversion changed since it was read (approved, rejected or re-priced meanwhile)."""
    c = row.conversion
    assert row.new_sale_minor is not None
    price, payout, margin = money.revshare_split(
        row.new_sale_minor, c["goal_advertiser_amount"], c["goal_publisher_amount"]
    )
    async with db.transaction():
        changed = (
            await Conversion.update(
                {
                    Conversion.sale_amount_minor: row.new_sale_minor,
                    Conversion.advertiser_amount_minor: price,
                    Conversion.publisher_amount_minor: payout,
                    Conversion.network_amount_minor: margin,
                }
            )
            .where(
                Conversion.id == c["id"],
                Conversion.status == P,
                Conversion.sale_amount_minor == c["sale_amount_minor"],
                Conversion.advertiser_amount_minor == c["advertiser_amount_minor"],
            )
            .returning(Conversion.id)
        )
        if changed:
            await audit.record(
                "conversion.repriced",
                actor_id=advertiser.id,
                object_type="conversion",
                object_id=c["id"],
                sale_before=c["sale_amount_minor"],
                sale=row.new_sale_minor,
                price_before=c["advertiser_amount_minor"],
                price=price,
                payout=payout,
                currency=c["currency"],
                source="csv",
            )
    if changed:
        c.update(
            sale_amount_minor=row.new_sale_minor,
            advertiser_amount_minor=price,
            publisher_amount_minor=payout,
            network_amount_minor=margin,
        )
    return bool(changed)


OUTCOME_TEXT = {
    "approved": "approved",
    "rejected": "rejected",
    "reversed": "reversed",
    "unfunded": "still pending: your balance cannot cover it",
    "failed": "not reversed just now: try again",
    "skipped": "skipped: it changed since the preview",
}


async def apply(
    advertiser: CurrentUser,
    text: str,
    *,
    campaign_id: int | None,
    reason: str = "",
    campaign_name: str = "",
    now: datetime | None = None,
) -> Applied:
    """Re-plan `text` against the database as it is now and carry out every valid row, each in its
    own transaction through the review page's functions: a second apply of the same file finds
    every row already done and changes nothing."""
    now = now or clock.now()
    current = await plan(advertiser, text, campaign_id=campaign_id, reason=reason, campaign_name=campaign_name)
    decision = review.Decision(action="csv")
    for row in current.actionable:
        c = row.conversion
        before = {k: list(getattr(decision, k)) for k in OUTCOME_TEXT}
        if row.outcome == "approve":
            if row.new_sale_minor is not None and not await _reprice(advertiser, row):
                decision.skipped.append(c["id"])
            else:
                await review.approve_row(advertiser, c, "", now, decision)
        elif row.outcome == "reject":
            await review.reject_row(advertiser, c, row.reason, decision)
        else:
            await review.reverse_row(advertiser, c, row.reason, decision)
        for key, ids in before.items():
            if len(getattr(decision, key)) > len(ids):
                row.outcome, row.message = key, OUTCOME_TEXT[key]
    return Applied(rows=current.rows, decision=decision, errors=len(current.errors), unchanged=current.counts()["none"])


def summary(applied: Applied) -> str:
    d = applied.decision
    parts = [
        f"Approved {len(d.approved)}",
        f"rejected {len(d.rejected)}",
        f"reversed {len(d.reversed)}",
        f"unfunded {len(d.unfunded)}",
        f"skipped {len(d.skipped) + len(d.failed) + applied.unchanged}",
    ]
    text = ", ".join(parts) + "."
    if applied.errors:
        text += f" {applied.errors} line{'s' if applied.errors != 1 else ''} with errors changed nothing."
    return text
