"""The Titans Finance export format: column names, vocabularies and label columns."""

from __future__ import annotations

#: header of the CSV the Titans Finance system exports, in order
EXPORT_COLUMNS: tuple[str, ...] = (
    "Date",
    "Type",
    "Description",
    "Amount",
    "Category",
    "Payment Method",
    "Status",
    "Reference",
    "Receipt URL",
)

#: export header -> typed snake_case column
SNAKE_CASE: dict[str, str] = {c: c.lower().replace(" ", "_") for c in EXPORT_COLUMNS}

#: columns the loader knows are labels (synthetic data only), never features
LABEL_EXPORT_COLUMNS: tuple[str, ...] = ("Is Anomaly",)
LABEL_COLUMNS: tuple[str, ...] = ("is_anomaly",)
SNAKE_CASE.update({"Is Anomaly": "is_anomaly"})

#: snake_case columns of a loaded frame, features first, then labels
COLUMNS: tuple[str, ...] = tuple(SNAKE_CASE[c] for c in EXPORT_COLUMNS)

TRANSACTION_TYPES: tuple[str, ...] = ("Income", "Expense")

EXPENSE_CATEGORIES: tuple[str, ...] = (
    "bad_debts",
    "computer_equipment",
    "entertainment",
    "food",
    "fuel",
    "furniture",
    "hardware",
    "home_office",
    "maintenance",
    "meals_entertainment",
    "office_supplies",
    "other",
    "professional_fees",
    "rent",
    "repairs",
    "software",
    "supplies",
    "telephone",
    "training",
    "travel",
    "vehicle",
    "vehicle_expenses",
)

PAYMENT_METHODS: tuple[str, ...] = (
    "credit_card",
    "debit_card",
    "bank_transfer",
    "cash",
    "check",
    "paypal",
)

STATUSES: tuple[str, ...] = ("paid", "received", "pending", "written_off", "refunded")
