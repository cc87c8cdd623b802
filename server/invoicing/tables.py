"""Tables of invoicing: who the parties are (billing profiles, the self-billing agreement), the VAT
rates by country and date, and the documents issued (invoices, credit notes, statements, self-billed
invoices) with their numbering and their stored PDF.

A document is issued once, in the database transaction of the money movement it describes, with
every figure and both parties' details copied into it: it never changes afterwards, whatever
becomes of the profile, the rates or the templates. `document` and `document_file` are append-only
(triggers refuse UPDATE and DELETE, as the ledger's: server/invoicing/schema.py). A correction is a
credit note, never an edit."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, Bytea, Date, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User


class PartyKind(StrEnum):
    individual = "individual"
    business = "business"


class VatRegime(StrEnum):
    """A seller's own VAT position (publishers, for self-billing): `standard` charges VAT; `franchise`
    does not (FR franchise en base, art. 293 B du CGI; IT regime forfettario)."""

    standard = "standard"
    franchise = "franchise"


class BillingProfile(Table):
    """The legal identity of an advertiser or publisher, as their documents name them. One per user;
    editing it changes only the documents issued afterwards (each document keeps its own copy).

    Ids are stored compact (no spaces or dots), validated with python-stdnum:
    `company_number`: FR SIRET (14 digits) or SIREN (9); `tax_code`: IT codice fiscale (16 characters
    for a person, 11 digits for a company); `vat_number`: an EU VAT number with its country prefix
    (FR: TVA intracommunautaire `FR..`; IT: the partita IVA as `IT` + 11 digits)."""

    user = ForeignKey(User, null=False, unique=True, index=True, on_delete=OnDelete.restrict)
    kind = Varchar(length=16, choices=PartyKind, default=PartyKind.individual)
    legal_name = Varchar(length=200)
    address = Text(default="")  # street lines, newline-separated
    postcode = Varchar(length=16, default="")
    city = Varchar(length=100, default="")
    country = Varchar(length=2)  # ISO 3166-1 alpha-2, upper case
    company_number = Varchar(length=20, default="")
    tax_code = Varchar(length=20, default="")
    vat_number = Varchar(length=20, default="")
    vat_regime = Varchar(length=16, choices=VatRegime, default=VatRegime.standard)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class SelfBillingAgreement(Table):
    """A publisher's consent that affnet issues invoices in their name for what it pays them (art. 289
    I-2 du CGI; art. 21 DPR 633/72). A row per acceptance, never deleted: revoking sets `revoked_at`;
    accepting again adds a row. The agreement in force at a payment decides its self-billed invoice."""

    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    version = Varchar(length=16)  # the wording accepted (server/invoicing/identity.py AGREEMENT_VERSION)
    accepted_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)


class VatRate(Table):
    """A country's standard VAT rate in basis points (2000 = 20 %), in force from `valid_from` up to and
    excluding `valid_to` (None: still in force). Seeded by the migration; finance adds a row when a
    rate changes, and documents keep the rate they were issued with."""

    country = Varchar(length=2, index=True)
    rate_bp = Integer()
    valid_from = Date()
    valid_to = Date(null=True, default=None)


class DocumentKind(StrEnum):
    invoice = "invoice"  # to an advertiser, for a credited top-up
    credit_note = "credit_note"  # to an advertiser, for a refund or a chargeback (negative amounts)
    statement = "statement"  # to a publisher, what a paid payout line pays
    self_billed_invoice = "self_billed_invoice"  # issued by affnet in a publisher's name, to affnet


class VatTreatment(StrEnum):
    domestic = "domestic"  # customer in the seller's country: the seller's rate
    eu_consumer = (
        "eu_consumer"  # an EU individual (or business without a valid VAT number) elsewhere: their country's rate (OSS)
    )
    reverse_charge = "reverse_charge"  # EU business with a valid VAT number in another country: no VAT, the mention
    outside_eu = "outside_eu"  # customer outside the EU: outside the scope of EU VAT
    franchise = "franchise"  # seller under a VAT exemption scheme (self-billing): no VAT, the mention
    not_subject = "not_subject"  # no VAT applies (statements)


class DocumentCounter(Table):
    """The last number issued in a series and year. Taken with UPDATE … RETURNING in the transaction
    that inserts the document, so concurrent issuers queue on the row, and a transaction that fails
    gives its number back: the numbers are unbroken (1, 2, 3 …) and never reused."""

    series = Varchar(length=8)
    year = Integer()
    last = Integer(default=0)


class Document(Table):
    """One issued document. Amounts are signed minor units (a credit note's are negative), net + VAT =
    total. `seller`, `buyer`, `lines` and `mentions` are JSON text copied at issue time."""

    kind = Varchar(length=24, choices=DocumentKind)
    series = Varchar(length=8)
    year = Integer()
    number = Integer()
    reference = Varchar(length=32, unique=True)  # as printed: "{series}-{year}-{number:06d}"
    # What issued it, unique: issuing again for the same event returns the first document.
    source_key = Varchar(length=120, unique=True)
    owner = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    funding = BigInt(null=True, default=None, index=True)  # the top-up an invoice or credit note is for
    payout_line = BigInt(null=True, default=None, index=True)  # the payout line a statement is for
    corrects = BigInt(null=True, default=None)  # the invoice a credit note corrects
    issued_at = Timestamptz()
    currency = Varchar(length=3)
    net_minor = BigInt()
    vat_minor = BigInt()
    total_minor = BigInt()
    vat_rate_bp = Integer(default=0)
    vat_country = Varchar(length=2, default="")
    treatment = Varchar(length=16, choices=VatTreatment)
    locale = Varchar(length=5, default="en")  # the language it is written in (the owner's at issue)
    seller = Text()
    buyer = Text()
    lines = Text()
    mentions = Text(default="[]")


class DocumentFile(Table):
    """A document's PDF, rendered once from the stored document and kept as rendered: downloads serve
    these bytes, never a new rendering."""

    document = ForeignKey(Document, null=False, unique=True, index=True, on_delete=OnDelete.restrict)
    pdf = Bytea()
    sha256 = Varchar(length=64)
    created_at = Timestamptz()
