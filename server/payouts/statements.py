"""Publishers' payout statements and self-billed invoices: one statement per paid payout line, and a
self-billed invoice in the publisher's name when they agreed to self-billing (issue 22).

Issued after the payment, never inside it: the payout path (execute.py `_settle`) stays as fast as it
was, and the worker's `issue_statements` job (every minute) issues what paid lines still lack,
oldest first, each line in its own transaction. Issuing again issues nothing new.

What a statement lists comes from the ledger, so it ties to the money to the cent. A line's
reservation (`payout-line:{id}:reserved`, keys.py) took out of the publisher's `publisher_available`
account everything posted before it and effective at or before the batch's cut-off, less what earlier
reservations took. So the statement's items are the entries on that account

    posted before this line's reservation and effective at or before this batch's cut-off,
    and not already covered by the previous line paid from it (posted before that line's
    reservation and effective at or before that batch's cut-off),

without the reservations themselves (and the reversals of held or failed lines' reservations, which
cancel out). Each entry's transaction names what it is for (LedgerTxn.reference_type/reference_id:
a conversion, an hour of CPC clicks, an hour of CPM impressions, a payout returned by Stripe, a
manual adjustment): the items are grouped per kind, campaign, goal and day (per kind, campaign and
goal when there would be more than MAX_LINES of them), with a quantity (conversions, paid clicks,
paid impressions). They add up to the line's `available_minor`; a debt netted by the payout
(`netted_minor`, the publisher_receivable the reservation paid off) is a negative line, so the
statement's total is exactly the line's `amount_minor`: the transfer. Should the ledger ever hold an
entry outside that picture (an entry posted late with an earlier effective time), a "balance brought
forward" line says so, and the total still ties.

The self-billed invoice (publishers with a billing profile and an agreement in force when they were
paid) sells affnet the publisher's services for the transfer, VAT by the publisher's position:
franchise (no VAT, the franchise mention), another EU country with a VAT number (reverse charge),
outside the EU, the network's own country with a VAT number (domestic: the transfer is the price
VAT included, net = total × 10000 / (10000 + rate) rounded half up, VAT = total − net), else no VAT
(an individual, or anyone without a VAT number)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from server.accounts.tables import Publisher, User
from server.campaigns.tables import Campaign, Goal
from server.conversions.tables import Conversion
from server.core import clock, db
from server.core import locale as locales
from server.core.hours import utc
from server.core.i18n import _, date_text, pgettext
from server.earnings.tables import ClickEarning, ImpressionEarning
from server.invoicing import documents, identity, vat
from server.invoicing.tables import Document, DocumentKind, VatRegime, VatTreatment
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount, LedgerEntry, LedgerTxn
from server.payouts.keys import reserved_key, settled_key
from server.payouts.tables import LineStatus, PayoutBatch, PayoutLine

log = logging.getLogger("affnet.payouts")

MAX_LINES = 500  # a statement lists at most this many lines (the rest is summed in one)
PAID = (LineStatus.paid.value, LineStatus.returned.value)  # paid (a returned line was paid, then reversed)
IN_FORCE = (  # a line whose reservation stands: it took its money out of the available balance
    LineStatus.approved.value,
    LineStatus.submitting.value,
    LineStatus.paid.value,
    LineStatus.returned.value,
)


def statement_key(line_id: int) -> str:
    return f"payout-line:{line_id}:statement"


def self_billed_key(line_id: int) -> str:
    return f"payout-line:{line_id}:self-billed"


# --- what a line pays, from the ledger ------------------------------------------------------------


@dataclass
class Entry:
    txn: int
    kind: str
    reference_type: str
    reference_id: int
    effective_at: datetime
    amount: int


@dataclass
class Group:
    category: str  # conversion, click, impression, returned, other
    negative: bool
    campaign: int | None
    goal: int | None
    day: date | None
    amount: int = 0
    quantity: int = 0
    first: date | None = None
    last: date | None = None
    references: set[int] = field(default_factory=set)


async def _txn_id(key: str) -> int | None:
    row = await LedgerTxn.select(LedgerTxn.id).where(LedgerTxn.idempotency_key == key).first()
    return row["id"] if row else None


async def _previous(line: dict[str, Any], reservation: int) -> tuple[int, datetime] | None:
    """The publisher's latest other line in the currency whose reservation stands and was posted
    before `reservation`: (its reservation's txn id, its batch's cut-off)."""
    rows = await PayoutLine.select(PayoutLine.id, PayoutLine.batch.period_end).where(
        PayoutLine.publisher == line["publisher"],
        PayoutLine.currency == line["currency"],
        PayoutLine.status.is_in(list(IN_FORCE)),
        PayoutLine.id != line["id"],
    )
    if not rows:
        return None
    cutoffs = {reserved_key(r["id"]): r["batch.period_end"] for r in rows}
    txns = await LedgerTxn.select(LedgerTxn.id, LedgerTxn.idempotency_key).where(
        LedgerTxn.idempotency_key.is_in(list(cutoffs)), LedgerTxn.id < reservation
    )
    if not txns:
        return None
    last = max(txns, key=lambda t: t["id"])
    return last["id"], utc(cutoffs[last["idempotency_key"]])


async def ledger_entries(line: dict[str, Any], cutoff: datetime) -> list[Entry]:
    """The entries on the publisher's available account that this line's reservation paid (see the
    module's docstring), reservations left out."""
    reservation = await _txn_id(reserved_key(line["id"]))
    if reservation is None:
        raise LookupError(f"payout line {line['id']} has no reservation in the ledger")
    account = (
        await LedgerAccount.select(LedgerAccount.id)
        .where(
            LedgerAccount.owner == line["publisher"],
            LedgerAccount.kind == K.publisher_available.value,
            LedgerAccount.currency == line["currency"],
        )
        .first()
    )
    if account is None:
        return []
    query = LedgerEntry.select(
        LedgerEntry.amount_minor,
        LedgerEntry.txn.id,
        LedgerEntry.txn.kind,
        LedgerEntry.txn.reference_type,
        LedgerEntry.txn.reference_id,
        LedgerEntry.txn.effective_at,
    ).where(LedgerEntry.account == account["id"], LedgerEntry.txn < reservation, LedgerEntry.txn.effective_at <= cutoff)
    previous = await _previous(line, reservation)
    if previous is not None:
        query = query.where((LedgerEntry.txn > previous[0]) | (LedgerEntry.txn.effective_at > previous[1]))
    found = []
    for r in await query:
        if r["txn.kind"].startswith("payout.reserved"):  # reservations and their reversals (held, failed)
            continue
        found.append(
            Entry(
                r["txn.id"],
                r["txn.kind"],
                r["txn.reference_type"],
                r["txn.reference_id"],
                utc(r["txn.effective_at"]),
                r["amount_minor"],
            )
        )
    return sorted(found, key=lambda e: e.txn)


CATEGORY = {"conversion": "conversion", "click_hour": "click", "impression_hour": "impression"}


async def _groups(entries: list[Entry], *, by_day: bool) -> list[Group]:
    """The entries grouped per category, sign, campaign, goal (and day)."""
    ids: dict[str, set[int]] = defaultdict(set)
    for e in entries:
        ids[e.reference_type].add(e.reference_id)
    facts: dict[tuple[str, int], tuple[int, int, date, int]] = {}  # (type, id) -> campaign, goal, day, units
    for reference_type, table, when, units in (
        ("conversion", Conversion, Conversion.converted_at, None),
        ("click_hour", ClickEarning, ClickEarning.hour, ClickEarning.paid_clicks),
        ("impression_hour", ImpressionEarning, ImpressionEarning.hour, ImpressionEarning.paid_impressions),
    ):
        wanted = sorted(ids.get(reference_type, ()))
        for i in range(0, len(wanted), 500):
            columns = [table.id, table.campaign, table.goal, when] + ([units] if units is not None else [])
            for row in await table.select(*columns).where(table.id.is_in(wanted[i : i + 500])):
                count = row[units._meta.name] if units is not None else 1
                facts[(reference_type, row["id"])] = (
                    row["campaign"],
                    row["goal"],
                    utc(row[when._meta.name]).date(),
                    count,
                )
    groups: dict[tuple, Group] = {}
    for e in entries:
        fact = facts.get((e.reference_type, e.reference_id))
        if fact is not None:
            category = CATEGORY[e.reference_type]
            campaign, goal, day, units = fact
        else:
            category = "returned" if e.reference_type == "payout_line" else "other"
            campaign, goal, day, units = None, None, e.effective_at.date(), 1
        negative = e.amount < 0
        key = (category, negative, campaign, goal, day if by_day else None)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(category, negative, campaign, goal, day if by_day else None)
        group.amount += e.amount
        if e.reference_id not in group.references:  # an earning's units count once (approval + release)
            group.references.add(e.reference_id)
            group.quantity += units
        group.first = min(group.first or day, day)
        group.last = max(group.last or day, day)
    return [g for g in groups.values() if g.amount]


async def _names(groups: list[Group]) -> tuple[dict[int, str], dict[int, str]]:
    campaigns = sorted({g.campaign for g in groups if g.campaign is not None})
    goals = sorted({g.goal for g in groups if g.goal is not None})
    names = {
        r["id"]: r["name"]
        for r in (
            await Campaign.select(Campaign.id, Campaign.name).where(Campaign.id.is_in(campaigns)) if campaigns else []
        )
    }
    goal_names = {
        r["id"]: r["name"] for r in (await Goal.select(Goal.id, Goal.name).where(Goal.id.is_in(goals)) if goals else [])
    }
    return names, goal_names


def _description(group: Group, campaigns: dict[int, str], goals: dict[int, str]) -> str:
    """The line's text, in the current locale (campaign and goal names as their advertiser wrote them)."""
    where = {"campaign": campaigns.get(group.campaign, ""), "goal": goals.get(group.goal, "")}
    if group.category == "conversion":
        if group.negative:
            return _("Reversed conversions: %(campaign)s, %(goal)s", **where)
        return _("Conversions: %(campaign)s, %(goal)s", **where)
    if group.category == "click":
        if group.negative:
            return _("Reversed clicks (CPC): %(campaign)s, %(goal)s", **where)
        return _("Clicks (CPC): %(campaign)s, %(goal)s", **where)
    if group.category == "impression":
        if group.negative:
            return _("Reversed impressions (CPM): %(campaign)s, %(goal)s", **where)
        return _("Impressions (CPM): %(campaign)s, %(goal)s", **where)
    if group.category == "returned":
        return _("Earlier payment returned (transfer reversed)")
    return _("Adjustments")


def _line(description: str, quantity: int, amount: int, day: date | None, detail: str = "") -> dict[str, Any]:
    quantity = max(quantity, 1)
    line: dict[str, Any] = {
        "description": description,
        "quantity": quantity,
        # The price of one unit when every unit was paid the same; 0 when they differ (rates changed
        # within the group, revenue shares, CPM's cumulative rounding): only the amount is printed then.
        "unit_minor": amount // quantity if amount % quantity == 0 else 0,
        "amount_minor": amount,
    }
    if day is not None:
        line["date"] = day.isoformat()
    if detail:
        line["detail"] = detail
    return line


def _period(group: Group) -> str:
    if group.first is None or group.first == group.last:
        return ""
    return _("from %(first)s to %(last)s", first=date_text(group.first), last=date_text(group.last))


async def statement_lines(line: dict[str, Any], cutoff: datetime) -> list[dict[str, Any]]:
    """The statement's lines (in the current locale): what the line pays, adding up to its amount."""
    entries = await ledger_entries(line, cutoff)
    groups = await _groups(entries, by_day=True)
    by_day = len(groups) <= MAX_LINES - 3
    if not by_day:
        groups = await _groups(entries, by_day=False)
    order = {"conversion": 0, "click": 1, "impression": 2, "returned": 3, "other": 4}
    groups.sort(key=lambda g: (g.last or date.min, order[g.category], g.negative, g.campaign or 0, g.goal or 0))
    rest: list[Group] = []
    if len(groups) > MAX_LINES - 3:  # the largest ones listed, the rest summed in one line
        ranked = sorted(groups, key=lambda g: -abs(g.amount))
        kept = {id(g) for g in ranked[: MAX_LINES - 4]}
        rest = [g for g in groups if id(g) not in kept]
        groups = [g for g in groups if id(g) in kept]
    campaigns, goals = await _names(groups)
    lines = []
    for g in groups:
        day = g.day if by_day else g.last
        lines.append(_line(_description(g, campaigns, goals), g.quantity, g.amount, day, "" if by_day else _period(g)))
    if rest:
        lines.append(_line(_("Other earnings and adjustments"), 1, sum(g.amount for g in rest), None))
    listed = sum(entry.amount for entry in entries)
    if listed != line["available_minor"]:  # not expected: the ledger holds an entry outside the picture
        log.warning(
            "payout line %s: ledger items add up to %s, the line's available balance is %s",
            line["id"],
            listed,
            line["available_minor"],
        )
        gap = line["available_minor"] - listed
        text = _("Balance brought forward") if gap > 0 else _("Balance carried forward to a later payment")
        lines.append(_line(text, 1, gap, None))
    if line["netted_minor"]:
        lines.append(
            _line(
                _("Debt netted: earnings reversed after an earlier payment"),
                1,
                -line["netted_minor"],
                utc(cutoff).date(),
            )
        )
    return lines


# --- parties and VAT ------------------------------------------------------------------------------


async def _publisher_party(user_id: int) -> tuple[dict[str, Any], bool, str]:
    """The publisher as their documents name them: (party, has a billing profile, language)."""
    user = await User.select(User.email, User.language).where(User.id == user_id).first()
    party = await identity.party_of(user_id)
    if party is not None:
        return party, True, user["language"] if user else ""
    publisher = await Publisher.select(Publisher.display_name).where(Publisher.user == user_id).first()
    return (
        {
            "kind": "individual",
            "name": publisher["display_name"] if publisher else (user["email"] if user else ""),
            "address": "",
            "postcode": "",
            "city": "",
            "country": "",
            "company_number": "",
            "tax_code": "",
            "vat_number": "",
            "vat_regime": VatRegime.standard.value,
            "email": user["email"] if user else "",
        },
        False,
        user["language"] if user else "",
    )


@dataclass(frozen=True)
class SelfBilledVat:
    treatment: VatTreatment
    rate_bp: int
    country: str
    net: int
    vat: int
    mentions: tuple[str, ...]


async def self_billed_vat(publisher: dict[str, Any], network_country: str, total: int, on: date) -> SelfBilledVat:
    """How the publisher's sale of `total` (what affnet transferred) to affnet bears VAT, with the
    mentions it needs (in the current locale)."""
    country = (publisher.get("country") or "").upper()
    vat_number = publisher.get("vat_number") or ""
    if publisher.get("vat_regime") == VatRegime.franchise.value:
        if country == "FR":
            mention = _("VAT not applicable, art. 293 B of the CGI")
        elif country == "IT":
            mention = _("Transaction under the VAT flat-rate scheme, art. 1 c. 54-89 L. 190/2014")
        else:
            mention = _("VAT exemption for small enterprises (art. 284 of Directive 2006/112/EC)")
        return SelfBilledVat(VatTreatment.franchise, 0, "", total, 0, (mention,))
    if country and country not in vat.EU:
        mention = _("Supplier established outside the EU: any VAT due is accounted for by the customer")
        return SelfBilledVat(VatTreatment.outside_eu, 0, "", total, 0, (mention,))
    if country == network_country and vat_number:
        rate = await vat.rate(network_country, on)
        net = vat_inclusive_net(total, rate)
        return SelfBilledVat(VatTreatment.domestic, rate, network_country, net, total - net, ())
    if country in vat.EU and vat_number:
        mention = _("Reverse charge: VAT due by the customer, art. 196 of Directive 2006/112/EC")
        return SelfBilledVat(VatTreatment.reverse_charge, 0, "", total, 0, (mention,))
    mention = _("No VAT: the supplier is not registered for VAT")
    return SelfBilledVat(VatTreatment.not_subject, 0, "", total, 0, (mention,))


def vat_inclusive_net(total: int, rate_bp: int) -> int:
    """The net amount of a VAT-inclusive `total`: total × 10000 / (10000 + rate), rounded half up."""
    whole = 10_000 + rate_bp
    return (total * 10_000 * 2 + whole) // (2 * whole)


# --- issuing --------------------------------------------------------------------------------------


async def _paid_at(line: dict[str, Any]) -> datetime:
    """When the line was paid: its settlement's time in the ledger (else the line's last change)."""
    row = (
        await LedgerTxn.select(LedgerTxn.effective_at)
        .where(LedgerTxn.idempotency_key == settled_key(line["id"]))
        .first()
    )
    return utc(row["effective_at"] if row else line["updated_at"])


async def _issued(line_id: int) -> list[dict[str, Any]]:
    return await Document.select().where(Document.payout_line == line_id).order_by(Document.id)


async def issue_for_line(line_id: int) -> list[dict[str, Any]]:
    """A paid line's statement, and its self-billed invoice when the publisher agreed to self-billing,
    in one transaction; the documents issued for it before when there are any (nothing new)."""
    return (await _issue(line_id))[0]


async def _issue(line_id: int) -> tuple[list[dict[str, Any]], bool]:
    """The line's documents, and whether this call issued them."""
    async with db.transaction():
        if not db.is_sqlite():  # two runs on one line queue here: the second finds the first's documents
            await PayoutLine.raw("SELECT id FROM payout_line WHERE id = {} FOR UPDATE", line_id)
        line = await PayoutLine.select().where(PayoutLine.id == line_id).first()
        if line is None:
            raise LookupError(f"there is no payout line {line_id}")
        if line["status"] not in PAID:
            raise ValueError(f"payout line {line_id} is {line['status']}: only a paid line gets a statement")
        if found := await _issued(line_id):
            return found, False
        batch = await PayoutBatch.select(PayoutBatch.period_end).where(PayoutBatch.id == line["batch"]).first()
        cutoff = utc(batch["period_end"])
        paid_at = await _paid_at(line)
        now = clock.now()
        network = identity.network_party()
        publisher, has_profile, language = await _publisher_party(line["publisher"])
        locale = identity.document_locale(language, publisher)
        issued = []
        with locales.using(locale):
            lines = await statement_lines(line, cutoff)
            assert sum(item["amount_minor"] for item in lines) == line["amount_minor"], (line_id, lines)
            paid_on = date_text(paid_at)
            mentions = [_("Paid by transfer on %(date)s.", date=paid_on)]
            if line["stripe_transfer_id"]:
                mentions.append(_("Transfer reference: %(transfer)s", transfer=line["stripe_transfer_id"]))
            statement = await documents.issue(
                kind=DocumentKind.statement,
                series=identity.series(DocumentKind.statement),
                owner=line["publisher"],
                source_key=statement_key(line_id),
                issued_at=now,
                currency=line["currency"],
                net_minor=line["amount_minor"],
                vat_minor=0,
                vat_rate_bp=0,
                vat_country="",
                treatment=VatTreatment.not_subject,
                locale=locale,
                seller=network,
                buyer=publisher,
                lines=lines,
                mentions=mentions,
                payout_line=line_id,
            )
            issued.append(statement)
            if has_profile and await identity.agreement_in_force(line["publisher"], paid_at):
                issued.append(await _self_billed(line, statement, publisher, network, locale, paid_at, cutoff, now))
    return issued, True


async def _self_billed(
    line: dict[str, Any],
    statement: dict[str, Any],
    publisher: dict[str, Any],
    network: dict[str, Any],
    locale: str,
    paid_at: datetime,
    cutoff: datetime,
    now: datetime,
) -> dict[str, Any]:
    total = line["amount_minor"]
    tax = await self_billed_vat(publisher, (network.get("country") or "").upper(), total, paid_at.date())
    description = _(
        "Affiliate marketing services up to %(cutoff)s (statement %(statement)s)",
        cutoff=date_text(cutoff),
        statement=statement["reference"],
    )
    mentions = [
        pgettext("document mention", "Self-billing"),
        _(
            "Invoice issued by %(network)s in the name and on behalf of %(publisher)s",
            network=network.get("name", ""),
            publisher=publisher.get("name", ""),
        ),
        *tax.mentions,
        _("Paid by transfer on %(date)s.", date=date_text(paid_at)),
    ]
    return await documents.issue(
        kind=DocumentKind.self_billed_invoice,
        series=identity.series(DocumentKind.self_billed_invoice),
        owner=line["publisher"],
        source_key=self_billed_key(line["id"]),
        issued_at=now,
        currency=line["currency"],
        net_minor=tax.net,
        vat_minor=tax.vat,
        vat_rate_bp=tax.rate_bp,
        vat_country=tax.country,
        treatment=tax.treatment,
        locale=locale,
        seller=publisher,
        buyer=network,
        lines=[_line(description, 1, tax.net, paid_at.date())],
        mentions=mentions,
        payout_line=line["id"],
    )


async def due(limit: int = 500) -> list[int]:
    """Paid lines without a document yet, oldest first."""
    rows = await PayoutLine.raw(
        "SELECT l.id FROM payout_line l LEFT JOIN document d ON d.payout_line = l.id "
        "WHERE l.status IN ('paid', 'returned') AND d.id IS NULL ORDER BY l.id LIMIT {}",
        int(limit),
    )
    return [r["id"] for r in rows]


async def issue_due(limit: int = 500) -> int:
    """Issue the documents of paid lines that have none yet, oldest first, each line in its own
    transaction; how many lines got them from this call. A line that fails is logged and left for the next run."""
    count = 0
    for line_id in await due(limit):
        try:
            if (await _issue(line_id))[1]:
                count += 1
        except Exception as exc:
            if db.is_unique_violation(exc):  # another run issued it meanwhile
                continue
            log.exception("payout line %s: its statement could not be issued", line_id)
    return count
