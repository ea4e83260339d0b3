"""Named drift scenarios for the synthetic generator, and the `SCENARIO@DATE:SEVERITY` syntax.

A scenario is a small function applied, vectorised, to the code-level draft of the generated
transactions (before the strings are rendered), restricted to rows dated on or after the
scenario's start. Rows before the start are never touched, and each scenario draws from its own
random stream, so the undrifted part of a frame is identical to the frame generated without it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from titans.errors import InputError

if TYPE_CHECKING:
    from titans.data.synth import TransactionDraft

#: the payment method that `payment_mix_shift` moves rows to (rare in the base mix, ~3%)
SHIFT_TARGET_METHOD = "paypal"

ScenarioFn = Callable[["TransactionDraft", NDArray[np.intp], float, np.random.Generator], None]


@dataclass(frozen=True)
class DriftScenario:
    """A registered scenario: its function and the severities it accepts (inclusive bounds)."""

    name: str
    apply: ScenarioFn
    min_severity: float
    max_severity: float
    #: True when severity 0 is meaningless (a multiplier), so the lower bound is exclusive
    exclusive_min: bool = False

    @property
    def summary(self) -> str:
        """The first line of the scenario function's docstring."""
        doc = self.apply.__doc__ or ""
        return doc.strip().splitlines()[0] if doc.strip() else self.name

    def check_severity(self, severity: float) -> None:
        """Raise InputError when `severity` is outside what this scenario accepts."""
        low_ok = (
            severity > self.min_severity if self.exclusive_min else severity >= self.min_severity
        )
        if not (np.isfinite(severity) and low_ok and severity <= self.max_severity):
            bracket = "(" if self.exclusive_min else "["
            raise InputError(
                f"drift severity {severity!r} is out of range for {self.name}: "
                f"use a value in {bracket}{self.min_severity:g}, {self.max_severity:g}]"
            )


def _known() -> str:
    return ", ".join(sorted(DRIFT_SCENARIOS))


@dataclass(frozen=True)
class DriftSpec:
    """One drift to inject: `scenario` applied to rows dated on/after `start` with `severity`."""

    scenario: str
    start: datetime.date
    severity: float

    def __post_init__(self) -> None:
        if self.scenario not in DRIFT_SCENARIOS:
            raise InputError(f"unknown drift scenario {self.scenario!r}: use one of {_known()}")
        start = self.start
        if isinstance(start, datetime.datetime):
            object.__setattr__(self, "start", start.date())
        elif isinstance(start, str):
            object.__setattr__(self, "start", _parse_date(start, what="drift start"))
        elif not isinstance(start, datetime.date):
            raise InputError(f"drift start {start!r} is not a date: use YYYY-MM-DD")
        try:
            severity = float(self.severity)
        except (TypeError, ValueError):
            raise InputError(
                f"drift severity {self.severity!r} is not a number: e.g. 1.3 or 0.2"
            ) from None
        object.__setattr__(self, "severity", severity)
        DRIFT_SCENARIOS[self.scenario].check_severity(severity)

    def __str__(self) -> str:
        return f"{self.scenario}@{self.start.isoformat()}:{self.severity:g}"


_SPEC_RE = re.compile(r"^\s*([A-Za-z_]+)@(\d{4}-\d{2}-\d{2}):([^\s:@]+)\s*$")


def _parse_date(text: str, *, what: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a valid date: use YYYY-MM-DD") from None


def parse_drift(spec: str) -> DriftSpec:
    """Parse the CLI syntax `SCENARIO@YYYY-MM-DD:SEVERITY` into a DriftSpec.

    >>> parse_drift("amount_inflation@2024-09-01:1.3")
    DriftSpec(scenario='amount_inflation', start=datetime.date(2024, 9, 1), severity=1.3)
    """
    match = _SPEC_RE.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise InputError(
            f"drift {spec!r} is malformed: write SCENARIO@YYYY-MM-DD:SEVERITY "
            f"(e.g. amount_inflation@2024-09-01:1.3) with SCENARIO one of {_known()}"
        )
    name, date_text, severity_text = match.groups()
    if name not in DRIFT_SCENARIOS:
        raise InputError(f"unknown drift scenario {name!r}: use one of {_known()}")
    try:
        severity = float(severity_text)
    except ValueError:
        raise InputError(
            f"drift severity {severity_text!r} in {spec!r} is not a number: e.g. 1.3 or 0.2"
        ) from None
    return DriftSpec(name, _parse_date(date_text, what="drift start"), severity)


# --------------------------------------------------------------------------- helpers


def _expense_rows(draft: TransactionDraft, rows: NDArray[np.intp]) -> NDArray[np.intp]:
    return rows[~draft.income[rows]]


def _pick(candidates: NDArray[np.intp], wanted: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """`wanted` distinct candidates (all of them when there are fewer), in row order."""
    wanted = min(max(wanted, 0), candidates.size)
    if wanted == 0:
        return candidates[:0]
    return np.sort(rng.choice(candidates, size=wanted, replace=False))


# --------------------------------------------------------------------------- scenarios


def amount_inflation(
    draft: TransactionDraft, rows: NDArray[np.intp], severity: float, rng: np.random.Generator
) -> None:
    """Multiply every expense amount dated on/after start by `severity` (1.3 = +30%).

    All expense rows are scaled (recurring, anomalous and bad-debt rows included); income rows
    are untouched, so mean and median expense amount after the date move by exactly `severity`.
    """
    expense = _expense_rows(draft, rows)
    draft.amount[expense] *= severity


def payment_mix_shift(
    draft: TransactionDraft, rows: NDArray[np.intp], severity: float, rng: np.random.Generator
) -> None:
    """Move a share `severity` of expense rows to `paypal`, a method rare before the date.

    Exactly round(severity × expense rows after the date) rows that were paid another way are
    chosen at random and set to `paypal`, so paypal's share of the expense payment mix after
    the date rises by `severity` (from its base ~3%), capped when fewer rows are left to move.
    """
    expense = _expense_rows(draft, rows)
    target = draft.catalogue.payment_code(SHIFT_TARGET_METHOD)
    movable = expense[draft.payment[expense] != target]
    chosen = _pick(movable, round(severity * expense.size), rng)
    draft.payment[chosen] = target


def new_merchants(
    draft: TransactionDraft, rows: NDArray[np.intp], severity: float, rng: np.random.Generator
) -> None:
    """Give a share `severity` of expense rows a merchant never seen before the date.

    round(severity × expense rows after the date) rows chosen at random get their reference
    replaced by a merchant from a per-category pool of new names (e.g. `Aurora Bakery` for food)
    that the base generator never emits; descriptions that name the merchant follow, while
    category, amount and payment method stay, so only the merchant vocabulary drifts.
    """
    expense = _expense_rows(draft, rows)
    chosen = _pick(expense, round(severity * expense.size), rng)
    draft.party[chosen] = draft.catalogue.sample_new_merchant(
        draft.generative_category[chosen], rng
    )


def unseen_categories(
    draft: TransactionDraft, rows: NDArray[np.intp], severity: float, rng: np.random.Generator
) -> None:
    """Turn a share `severity` of expense rows into categories outside the 22 known ones.

    round(severity × expense rows after the date) ordinary (not recurring, not anomalous)
    expense rows are redrawn as `marketing`, `insurance`, `utilities` or `cloud_services`, each
    with its own merchants, descriptions, amounts and payment mix, and labelled as such.
    """
    expense = _expense_rows(draft, rows)
    ordinary = expense[~draft.recurring[expense] & ~draft.anomaly[expense]]
    chosen = _pick(ordinary, round(severity * expense.size), rng)
    codes = draft.catalogue.unseen_category_codes
    draft.redraw_expenses(chosen, rng.choice(codes, size=chosen.size), rng)


def concept_drift(
    draft: TransactionDraft, rows: NDArray[np.intp], severity: float, rng: np.random.Generator
) -> None:
    """Relabel the category of a share ≈ `severity` of expense rows; descriptions stay the same.

    Each of the 22 categories is mapped to a different one by a derangement fixed by the seed.
    Merchants are taken in a seeded random order until their rows after the date reach
    `severity` of the expense rows there (so the share is met to within one merchant's volume),
    and every expense row of those merchants after the date gets the mapped category. The
    change is consistent (same description and merchant → same new label), as when a
    bookkeeper starts filing a merchant under another account: models trained before the date
    lose accuracy, a retrained model can learn the new mapping.
    """
    expense = _expense_rows(draft, rows)
    expense = expense[draft.label[expense] >= 0]
    expense = expense[draft.label[expense] < draft.catalogue.n_categories]
    if expense.size == 0 or severity <= 0:
        return
    n_categories = draft.catalogue.n_categories
    order = rng.permutation(n_categories)
    mapping = np.empty(n_categories, dtype=np.int16)
    mapping[order] = np.roll(order, -1)  # a cycle through all 22: never maps a category to itself
    parties, counts = np.unique(draft.party[expense], return_counts=True)
    shuffled = rng.permutation(parties.size)
    cumulative = np.cumsum(counts[shuffled]) / expense.size
    # the prefix of merchants whose volume comes closest to the wanted share
    cut = int(np.searchsorted(cumulative, severity, side="left"))
    if cut < cumulative.size and (
        cut == 0 or abs(cumulative[cut] - severity) <= abs(cumulative[cut - 1] - severity)
    ):
        cut += 1
    drifted_parties = parties[shuffled[:cut]]
    chosen = expense[np.isin(draft.party[expense], drifted_parties)]
    draft.label[chosen] = mapping[draft.label[chosen]]


def quality_faults(
    draft: TransactionDraft, rows: NDArray[np.intp], severity: float, rng: np.random.Generator
) -> None:
    """Corrupt a share `severity` of expense rows with the faults real exports carry.

    round(severity × expense rows after the date) rows are chosen at random and each gets one
    fault, the six kinds in equal shares: description missing (NA); payment method missing
    (NA); payment method truncated (`credit_car`, `debit_car`, `bank_transfe`, `cas`, `chec`,
    `paypa`); category misspelt (`maintainance`, `sofware`, `office_suplies`, ...); amount with
    the wrong sign (a positive expense); absurd amount (× 1,000 to × 100,000).
    """
    expense = _expense_rows(draft, rows)
    chosen = _pick(expense, round(severity * expense.size), rng)
    # equal shares of each kind, in random order over the chosen rows
    kinds = rng.permutation(np.arange(chosen.size) % 6)
    cat = draft.catalogue
    draft.description_missing[chosen[kinds == 0]] = True
    draft.payment[chosen[kinds == 1]] = -1
    typo = chosen[(kinds == 2) & (draft.payment[chosen] >= 0)]
    draft.payment[typo] = cat.payment_typo_codes[draft.payment[typo]]
    misspelt = chosen[(kinds == 3) & (draft.label[chosen] >= 0)]
    draft.label[misspelt] = cat.misspelt_label_codes[draft.label[misspelt]]
    flipped = chosen[kinds == 4]
    draft.amount[flipped] = -draft.amount[flipped]
    absurd = chosen[kinds == 5]
    draft.amount[absurd] *= 10.0 ** rng.uniform(3.0, 5.0, size=absurd.size)


DRIFT_SCENARIOS: dict[str, DriftScenario] = {
    s.name: s
    for s in (
        DriftScenario("amount_inflation", amount_inflation, 0.0, 100.0, exclusive_min=True),
        DriftScenario("payment_mix_shift", payment_mix_shift, 0.0, 1.0),
        DriftScenario("new_merchants", new_merchants, 0.0, 1.0),
        DriftScenario("unseen_categories", unseen_categories, 0.0, 1.0),
        DriftScenario("concept_drift", concept_drift, 0.0, 1.0),
        DriftScenario("quality_faults", quality_faults, 0.0, 1.0),
    )
}
