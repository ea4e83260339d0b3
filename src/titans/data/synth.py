"""Vectorised synthetic transactions in the Titans Finance export format, with drift scenarios.

`generate(rows, seed)` builds a code-level draft of the ledger with whole-column numpy draws
(categories, merchants, description templates, amounts, dates, payment methods, recurring
items, labelled anomalies), applies the requested drift scenarios to that draft, then renders
the strings once. The business it simulates is fixed (merchants, price levels, templates come
from a catalogue built with a constant seed), so frames generated with different seeds are
different months of the same business, and the same arguments always give the same frame.

Structure a model can learn, and where it stops:
- category: description templates and merchants per category; most merchants belong to one
  category, some (Amazon, Costco, Staples, Home Depot, Shell, ...) to several; confusable groups
  (food / meals_entertainment / entertainment, fuel / vehicle / vehicle_expenses, ...) share
  templates and merchants, and 3.5% of their rows are filed under another category of the group
  (as bookkeepers do); ~4% of expense descriptions are generic ("Card payment", "Invoice 4821").
- amount: log-normal per category × merchant price level × template multiplier (an annual
  licence ≈ 12 monthly subscriptions) × item multiplier (a laptop ≫ a keyboard) × noise.
- dates: fewer rows at weekends, peaks around the turn of the month, a mild yearly cycle; rent on
  the 1st, subscriptions and phone bills on fixed days, retainer income on the 1st/15th/last day.
- anomalies (1%, `is_anomaly`): amount spikes (55%: ×5–20 the merchant's usual amount for the
  category's priciest purchase, which is ×8–40 or more its median), unusual payment method for
  the category with a ×4–15 amount (15%), weekend purchases at unknown merchants at ×3–12 that
  priciest norm (15%), duplicate charges (15%: an exact copy of another expense row).
"""

from __future__ import annotations

import datetime
import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from titans.data.columns import COLUMNS, EXPENSE_CATEGORIES, PAYMENT_METHODS, STATUSES
from titans.data.drift_scenarios import DRIFT_SCENARIOS, DriftScenario, DriftSpec, parse_drift
from titans.data.synth_catalogue import (
    INCOME_MEDIAN,
    INCOME_SIGMA,
    MAX_SLOTS,
    MISFILED_SHARE,
    SLOT_KINDS,
    Catalogue,
    catalogue,
)
from titans.errors import InputError

__all__ = [
    "DRIFT_SCENARIOS",
    "DriftScenario",
    "DriftSpec",
    "TransactionDraft",
    "generate",
    "parse_drift",
]

#: the most rows one call will generate (a guard against typos such as 10**10)
MAX_ROWS = 50_000_000
#: share of labelled anomalies among all rows
ANOMALY_SHARE = 0.01
#: share of expense rows whose description is generic ("Card payment", "Invoice 4821")
GENERIC_SHARE = 0.04
#: share of ordinary (non-recurring) rows that are income
INCOME_SHARE = 0.07

_PAY = {m: i for i, m in enumerate(PAYMENT_METHODS)}
_STATUS = {s: i for i, s in enumerate(STATUSES)}
_MONTHS = np.array(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"],
    dtype=object,
)  # fmt: skip
#: string dtype of the text columns: pandas' `str` (NA = nan) where it exists, else object
_TEXT_DTYPE: object = pd.StringDtype(na_value=np.nan) if int(pd.__version__[0]) >= 3 else object


# =========================================================================== the draft

_ARRAY_FIELDS = (
    "day", "income", "recurring", "generative_category", "label", "party", "template", "item",
    "number", "amount", "payment", "status", "receipt", "anomaly", "description_missing",
)  # fmt: skip


@dataclass
class TransactionDraft:
    """The generated ledger as integer codes, one array per field; rendered to strings last.

    Drift scenarios edit these arrays in place: `label` (category label code, -1 = NA) may
    differ from `generative_category` (what produced the description and amount), `payment` is
    -1 for NA, `receipt` is 0 for no receipt, `amount` is signed and unrounded.
    """

    catalogue: Catalogue
    day: NDArray[np.int64]
    income: NDArray[np.bool_]
    recurring: NDArray[np.bool_]
    generative_category: NDArray[np.int16]
    label: NDArray[np.int16]
    party: NDArray[np.int64]
    template: NDArray[np.int64]
    item: NDArray[np.int64]
    number: NDArray[np.int64]
    amount: NDArray[np.float64]
    payment: NDArray[np.int16]
    status: NDArray[np.int8]
    receipt: NDArray[np.int64]
    anomaly: NDArray[np.bool_]
    description_missing: NDArray[np.bool_]

    @classmethod
    def empty(cls, cat: Catalogue, n: int) -> TransactionDraft:
        """A draft of `n` zeroed rows (all expense, no label, no payment method)."""
        return cls(
            catalogue=cat,
            day=np.zeros(n, np.int64),
            income=np.zeros(n, np.bool_),
            recurring=np.zeros(n, np.bool_),
            generative_category=np.full(n, -1, np.int16),
            label=np.full(n, -1, np.int16),
            party=np.zeros(n, np.int64),
            template=np.zeros(n, np.int64),
            item=np.zeros(n, np.int64),
            number=np.zeros(n, np.int64),
            amount=np.zeros(n, np.float64),
            payment=np.full(n, -1, np.int16),
            status=np.zeros(n, np.int8),
            receipt=np.zeros(n, np.int64),
            anomaly=np.zeros(n, np.bool_),
            description_missing=np.zeros(n, np.bool_),
        )

    def __len__(self) -> int:
        return int(self.day.size)

    def take(self, index: NDArray[np.integer]) -> TransactionDraft:
        """A new draft with the rows at `index`, in that order."""
        return TransactionDraft(
            self.catalogue, **{f: getattr(self, f)[index] for f in _ARRAY_FIELDS}
        )

    @classmethod
    def concat(cls, parts: Sequence[TransactionDraft]) -> TransactionDraft:
        """Rows of `parts` one after the other."""
        return cls(
            parts[0].catalogue,
            **{f: np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAY_FIELDS},
        )

    def redraw_expenses(
        self, rows: NDArray[np.integer], categories: NDArray[np.integer], rng: np.random.Generator
    ) -> None:
        """Draw fresh ordinary expense details (merchant, text, amount, ...) for `rows`."""
        cat = self.catalogue
        n = rows.size
        cats = np.asarray(categories, dtype=np.int64)
        party = cat.merchant_choice.sample(cats, rng)
        template = cat.template_choice.sample(cats, rng)
        generic = rng.random(n) < GENERIC_SHARE
        template[generic] = cat.generic_choice.sample(np.zeros(int(generic.sum()), np.int64), rng)
        item = cat.item_choice.sample(cats, rng)
        log_amount = (
            cat.log_median[cats]
            + cat.party_level[party]
            + cat.template_log_mult[template]
            + np.where(cat.template_uses_item[template], cat.item_log_mult[item], 0.0)
            + cat.sigma[cats] * rng.standard_normal(n)
        )
        bad_debt = cats == EXPENSE_CATEGORIES.index("bad_debts")
        # expenses are paid (93%), pending (6%) or refunded (1%); bad debts are written off
        u = rng.random(n)
        status = np.full(n, _STATUS["paid"], dtype=np.int8)
        status[u >= 0.93] = _STATUS["pending"]
        status[u >= 0.99] = _STATUS["refunded"]
        status[bad_debt] = _STATUS["written_off"]
        receipt = np.where(
            rng.random(n) < cat.receipt_p[cats], rng.integers(10**9, 10**10, size=n), 0
        )
        self.income[rows] = False
        self.recurring[rows] = False
        self.generative_category[rows] = cats
        partner = cat.misfile_choice.sample(cats, rng)
        misfiled = (rng.random(n) < MISFILED_SHARE) & (partner >= 0)
        self.label[rows] = np.where(misfiled, partner, cats)
        self.party[rows] = party
        self.template[rows] = template
        self.item[rows] = item
        self.number[rows] = rng.integers(1000, 100_000, size=n)
        self.amount[rows] = -np.exp(log_amount)
        self.payment[rows] = cat.payment_choice.sample(cats, rng)
        self.status[rows] = status
        self.receipt[rows] = receipt
        self.anomaly[rows] = False
        self.description_missing[rows] = False


# =========================================================================== calendar


@dataclass(frozen=True)
class _Calendar:
    """Per-day facts of the generated period, indexed by day offset from the start."""

    origin: np.datetime64
    days: int
    dates: NDArray[np.datetime64]
    dow: NDArray[np.int64]  # Monday = 0
    dom: NDArray[np.int64]  # 1..31
    month: NDArray[np.int64]  # 0..11
    year: NDArray[np.int64]
    days_in_month: NDArray[np.int64]
    month_starts: NDArray[np.datetime64]

    @classmethod
    def build(cls, start: datetime.date, days: int) -> _Calendar:
        origin = np.datetime64(start, "D")
        dates = origin + np.arange(days)
        months = dates.astype("datetime64[M]")
        month_start = months.astype("datetime64[D]")
        next_month = (months + 1).astype("datetime64[D]")
        return cls(
            origin=origin,
            days=days,
            dates=dates,
            dow=(dates.astype(np.int64) + 3) % 7,
            dom=(dates - month_start).astype(np.int64) + 1,
            month=months.astype(np.int64) % 12,
            year=dates.astype("datetime64[Y]").astype(np.int64) + 1970,
            days_in_month=(next_month - month_start).astype(np.int64),
            month_starts=np.unique(month_start),
        )

    def weights(self, *, income: bool) -> NDArray[np.float64]:
        """Relative volume of ordinary rows per day: weekly, monthly and yearly cycles."""
        turn = (self.dom <= 2) | (self.dom > self.days_in_month - 2)
        doy = (self.dates - self.dates.astype("datetime64[Y]")).astype(np.int64)
        yearly = 1.0 + 0.12 * np.cos(2 * np.pi * (doy - 330) / 365.25)
        if income:  # clients pay on weekdays, most at month end and mid-month
            weekly = np.array([1.0, 1.0, 1.0, 1.0, 1.15, 0.08, 0.04])[self.dow]
            monthly = np.where(self.dom > self.days_in_month - 3, 1.9, 1.0)
            monthly = np.where(self.dom == 15, 1.5, monthly)
        else:
            weekly = np.array([1.0, 1.05, 1.05, 1.0, 1.1, 0.45, 0.3])[self.dow]
            monthly = np.where(turn, 1.35, 1.0)
        return weekly * monthly * yearly

    def sample_days(self, n: int, *, income: bool, rng: np.random.Generator) -> NDArray[np.int64]:
        cum = np.cumsum(self.weights(income=income))
        days = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        return np.minimum(days, self.days - 1).astype(np.int64)


# =========================================================================== generation

#: share of all rows spent on each recurring stream (upper bound: partial months emit fewer)
_RECURRING_SHARE = {"rent": 0.01, "software": 0.025, "telephone": 0.008, "retainer": 0.015}


def _recurring(
    cal: _Calendar, rows: int, cat: Catalogue, rng: np.random.Generator
) -> TransactionDraft:
    """Monthly series: rent on the 1st, subscriptions and phone bills, retainer income."""
    n_months = cal.month_starts.size
    streams: list[TransactionDraft] = []
    software = EXPENSE_CATEGORIES.index("software")
    telephone = EXPENSE_CATEGORIES.index("telephone")
    rent = EXPENSE_CATEGORIES.index("rent")
    for stream, share in _RECURRING_SHARE.items():
        k = int(share * rows // n_months)
        if k == 0:
            continue
        zeros = np.zeros(k, np.int64)
        category = {"rent": rent, "software": software, "telephone": telephone}.get(stream, -1)
        dom = rng.integers(1, 29, size=k)
        if stream == "rent":
            party = cat.landlord_choice.sample(zeros, rng)
            template = np.where(
                rng.random(k) < 0.5,
                cat.recurring_templates["rent_month"],
                cat.recurring_templates["rent_landlord"],
            )
            log_amount = np.log(3800.0) + cat.party_level[party] + 0.45 * rng.standard_normal(k)
            payment = np.where(rng.random(k) < 0.85, _PAY["bank_transfer"], _PAY["check"])
            dom[:] = 1
        elif stream == "retainer":
            party = cat.client_choice.sample(zeros, rng)
            template = np.full(k, cat.recurring_templates["retainer"])
            log_amount = np.log(3500.0) + cat.party_level[party] + 0.5 * rng.standard_normal(k)
            payment = np.full(k, -1)
            dom = rng.choice(np.array([1, 15, 0]), size=k)  # 0 = last day of the month
        else:
            party = cat.merchant_choice.sample(np.full(k, category), rng)
            template = np.full(k, cat.recurring_templates[stream])
            median, sigma = (45.0, 0.6) if stream == "software" else (70.0, 0.35)
            log_amount = np.log(median) + cat.party_level[party] + sigma * rng.standard_normal(k)
            method = ("credit_card", "bank_transfer")
            payment = np.where(rng.random(k) < 0.8, _PAY[method[0]], _PAY[method[1]])
        # one row per (series, month) that falls inside the period
        start_days = (cal.month_starts - cal.origin).astype(np.int64)
        month_len = np.diff(
            np.append(cal.month_starts, cal.month_starts[-1] + np.timedelta64(31, "D"))
            .astype("datetime64[M]")
            .astype("datetime64[D]")
        ).astype(np.int64)
        offset = np.where(dom[:, None] == 0, month_len[None, :], dom[:, None]) - 1
        day = start_days[None, :] + offset
        series, month = np.nonzero((day >= 0) & (day < cal.days))
        m = series.size
        part = TransactionDraft.empty(cat, m)
        part.day[:] = day[series, month]
        part.income[:] = stream == "retainer"
        part.recurring[:] = True
        part.generative_category[:] = category
        part.label[:] = category
        part.party[:] = party[series]
        part.template[:] = template[series]
        part.number[:] = rng.integers(1000, 100_000, size=m)
        sign = 1.0 if stream == "retainer" else -1.0
        part.amount[:] = sign * np.exp(log_amount[series])
        part.payment[:] = payment[series]
        u = rng.random(m)
        if stream == "retainer":
            part.status[:] = np.where(u < 0.95, _STATUS["received"], _STATUS["pending"])
        else:
            part.status[:] = np.where(u < 0.97, _STATUS["paid"], _STATUS["pending"])
            part.receipt[:] = np.where(
                rng.random(m) < cat.receipt_p[category], rng.integers(10**9, 10**10, size=m), 0
            )
        streams.append(part)
    if not streams:
        return TransactionDraft.empty(cat, 0)
    return TransactionDraft.concat(streams)


def _ordinary(cal: _Calendar, n: int, cat: Catalogue, rng: np.random.Generator) -> TransactionDraft:
    """One-off expenses across the 22 categories, and one-off client income."""
    draft = TransactionDraft.empty(cat, n)
    income = rng.random(n) < INCOME_SHARE
    expense_rows = np.flatnonzero(~income)
    income_rows = np.flatnonzero(income)
    categories = cat.category_choice.sample(np.zeros(expense_rows.size, np.int64), rng)
    draft.redraw_expenses(expense_rows, categories, rng)
    draft.day[expense_rows] = cal.sample_days(expense_rows.size, income=False, rng=rng)

    k = income_rows.size
    zeros = np.zeros(k, np.int64)
    party = cat.client_choice.sample(zeros, rng)
    template = cat.income_choice.sample(zeros, rng)
    draft.income[income_rows] = True
    draft.day[income_rows] = cal.sample_days(k, income=True, rng=rng)
    draft.party[income_rows] = party
    draft.template[income_rows] = template
    draft.number[income_rows] = rng.integers(1000, 100_000, size=k)
    draft.amount[income_rows] = np.exp(
        np.log(INCOME_MEDIAN)
        + cat.party_level[party]
        + cat.template_log_mult[template]
        + INCOME_SIGMA * rng.standard_normal(k)
    )
    draft.status[income_rows] = np.where(
        rng.random(k) < 0.88, _STATUS["received"], _STATUS["pending"]
    )
    return draft


#: anomaly kinds and their shares: amount spike, unusual payment method, weekend purchase at an
#: unknown merchant, duplicate charge
_ANOMALY_KINDS = ("spike", "unusual_payment", "weekend_unknown", "duplicate")
_ANOMALY_P = (0.6, 0.15, 0.15, 0.1)


def _inject_anomalies(
    draft: TransactionDraft, cal: _Calendar, rows: int, rng: np.random.Generator
) -> None:
    """Turn ~ANOMALY_SHARE of the rows (ordinary expenses) into labelled anomalies."""
    cat = draft.catalogue
    candidates = np.flatnonzero(~draft.income & ~draft.recurring)
    n = min(round(ANOMALY_SHARE * rows), candidates.size // 2)
    if n == 0:
        return
    chosen = rng.choice(candidates, size=n, replace=False)
    kind = rng.choice(len(_ANOMALY_KINDS), size=n, p=_ANOMALY_P)
    draft.anomaly[chosen] = True

    def high_norm(rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """The merchant's usual amount for the category's priciest kind of purchase."""
        c = draft.generative_category[rows]
        return -np.exp(cat.log_median[c] + cat.party_level[draft.party[rows]] + cat.log_high[c])

    spike = chosen[kind == 0]
    draft.amount[spike] = high_norm(spike) * np.exp(
        rng.uniform(np.log(5), np.log(20), size=spike.size)
    )

    unusual = chosen[kind == 1]
    draft.payment[unusual] = cat.unusual_payment[draft.generative_category[unusual]]
    draft.amount[unusual] *= np.exp(rng.uniform(np.log(4), np.log(15), size=unusual.size))

    weekend = chosen[kind == 2]
    draft.amount[weekend] = high_norm(weekend) * np.exp(
        rng.uniform(np.log(3), np.log(12), size=weekend.size)
    )
    draft.party[weekend] = cat.unknown_choice.sample(np.zeros(weekend.size, np.int64), rng)
    draft.receipt[weekend] = 0
    day = draft.day[weekend]
    moved = day + (5 - cal.dow[day]) + rng.integers(0, 2, size=day.size)  # Saturday or Sunday
    moved = np.where(moved >= cal.days, moved - 7, moved)
    moved = np.where(moved < 0, moved + 7, moved)
    draft.day[weekend] = np.where((moved >= 0) & (moved < cal.days), moved, day)

    duplicate = chosen[kind == 3]
    sources = np.setdiff1d(candidates, chosen, assume_unique=True)
    source = rng.choice(sources, size=duplicate.size)
    for name in ("day", "generative_category", "label", "party", "template", "item", "number",
                 "amount", "payment", "status"):  # fmt: skip
        column = getattr(draft, name)
        column[duplicate] = column[source]
    draft.receipt[duplicate] = 0


def _render(draft: TransactionDraft, cal: _Calendar) -> pd.DataFrame:
    """The typed transactions frame for a draft (strings built by whole-column operations)."""
    cat = draft.catalogue
    n = len(draft)
    rows = np.arange(n)
    day = draft.day
    slot_values = np.empty((len(SLOT_KINDS), n), dtype=object)
    slot_values[0] = ""
    slot_values[1] = cat.party_names[draft.party]
    slot_values[2] = cat.item_names[draft.item]
    slot_values[3] = _digits()[0][draft.number]
    slot_values[4] = _MONTHS[cal.month[day]]
    slot_values[5] = cal.year.astype(str).astype(object)[day]
    lits = cat.template_literals[:, draft.template]
    kinds = cat.template_slots[:, draft.template]
    description = lits[0]
    for k in range(MAX_SLOTS):
        description = description + slot_values[kinds[k], rows] + lits[k + 1]
    description[draft.description_missing] = None

    label = cat.category_labels[np.maximum(draft.label, 0)]
    label[draft.label < 0] = None
    payment = cat.payment_labels[np.maximum(draft.payment, 0)]
    payment[draft.payment < 0] = None
    has_receipt = draft.receipt > 0
    receipt = np.full(n, None, dtype=object)
    plain, padded = _digits()
    ids = draft.receipt[has_receipt]  # 10 digits: rendered as two 5-digit halves
    receipt[has_receipt] = (
        "https://receipts.titans-finance.example/r/"
        + plain[ids // 100_000]
        + padded[ids % 100_000]
        + ".pdf"
    )
    columns: dict[str, object] = {
        "date": (cal.origin + day).astype("datetime64[ns]"),
        "type": np.array(["Expense", "Income"], dtype=object)[draft.income.astype(np.int8)],
        "description": description,
        "amount": np.round(draft.amount, 2),
        "category": label,
        "payment_method": payment,
        "status": np.array(STATUSES, dtype=object)[draft.status],
        "reference": cat.party_names[draft.party],
        "receipt_url": receipt,
    }
    # each text column is converted to the string dtype exactly once (the costly step)
    typed = {
        c: columns[c] if c in ("date", "amount") else pd.Series(columns[c], dtype=_TEXT_DTYPE)
        for c in COLUMNS
    }
    frame = pd.DataFrame(typed)
    frame["is_anomaly"] = draft.anomaly.astype(bool)
    return frame


@functools.cache
def _digits() -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """0..99999 as text, plain and zero-padded to 5 digits (a lookup beats int→str per row)."""
    numbers = np.arange(100_000)
    plain = numbers.astype(str).astype(object)
    return plain, np.char.zfill(plain.astype(str), 5).astype(object)


def _as_date(value: str | datetime.date, what: str) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InputError(f"{what} {value!r} is not a valid date: use YYYY-MM-DD")


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{what} must be a whole number, got {value!r}")
    if not low <= int(value) <= high:
        raise InputError(f"{what} must be between {low:,} and {high:,}, got {value!r}")
    return int(value)


def generate(
    rows: int,
    seed: int = 7,
    start: str | datetime.date = "2024-01-01",
    days: int = 365,
    drifts: Sequence[DriftSpec | str] = (),
) -> pd.DataFrame:
    """Generate `rows` synthetic transactions dated in [start, start + days), sorted by date.

    Same arguments → identical frame. `drifts` (DriftSpec or `SCENARIO@DATE:SEVERITY` text) are
    applied in order, each to the rows dated on or after its start (see `DRIFT_SCENARIOS`).
    Columns: date, type, description, amount, category, payment_method, status, reference,
    receipt_url, is_anomaly (label, not a feature). Raises InputError for bad arguments.

    >>> frame = generate(1_000, seed=1)
    >>> len(frame), frame["date"].is_monotonic_increasing, frame["date"].min().year
    (1000, True, 2024)
    >>> sorted(frame["type"].unique())
    ['Expense', 'Income']
    """
    rows = _check_int(rows, "rows", 1, MAX_ROWS)
    days = _check_int(days, "days", 1, 366 * 100)
    seed = _check_int(seed, "seed", 0, 2**63 - 1)
    start_date = _as_date(start, "start date")
    items: Sequence[object] = [drifts] if isinstance(drifts, DriftSpec | str) else drifts
    specs: list[DriftSpec] = []
    for item in items:
        spec = parse_drift(item) if isinstance(item, str) else item
        if not isinstance(spec, DriftSpec):
            raise InputError(
                f"drift {item!r} is not a DriftSpec: build one with parse_drift('NAME@DATE:SEV')"
            )
        specs.append(spec)

    cat = catalogue()
    cal = _Calendar.build(start_date, days)
    rng = np.random.default_rng(seed)
    recurring = _recurring(cal, rows, cat, rng)
    ordinary = _ordinary(cal, rows - len(recurring), cat, rng)
    draft = TransactionDraft.concat([recurring, ordinary])
    _inject_anomalies(draft, cal, rows, rng)
    draft = draft.take(np.argsort(draft.day, kind="stable"))

    for k, spec in enumerate(specs):
        scenario = DRIFT_SCENARIOS[spec.scenario]
        first_day = (spec.start - start_date).days
        affected = np.flatnonzero(draft.day >= first_day)
        drift_rng = np.random.default_rng([seed, k, zlib.crc32(spec.scenario.encode())])
        scenario.apply(draft, affected, spec.severity, drift_rng)
    return _render(draft, cal)
