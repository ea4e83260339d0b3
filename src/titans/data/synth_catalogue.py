"""The simulated business behind the synthetic generator: merchants, templates, price levels.

Everything here is fixed (built with a constant seed), so frames generated with different seeds
are different periods of the same business. `catalogue()` turns the literal tables below into
code arrays and vectorised weighted choices that `titans.data.synth` draws from.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from titans.data.columns import EXPENSE_CATEGORIES, PAYMENT_METHODS

_PAY = {m: i for i, m in enumerate(PAYMENT_METHODS)}

#: share of expense rows in a confusable group filed under another category of that group
MISFILED_SHARE = 0.035
#: categories bookkeepers confuse with each other (they also share merchants and templates)
CONFUSABLE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("food", "meals_entertainment", "entertainment"),
    ("fuel", "vehicle", "vehicle_expenses"),
    ("repairs", "maintenance"),
    ("supplies", "office_supplies"),
    ("computer_equipment", "hardware"),
    ("furniture", "home_office"),
    ("software", "telephone"),
    ("training", "professional_fees"),
)

# =========================================================================== catalogue data


def _pay(cc: float, dc: float, bt: float, cash: float, check: float, paypal: float) -> tuple:
    """Payment mix in PAYMENT_METHODS order."""
    return (cc, dc, bt, cash, check, paypal)


@dataclass(frozen=True)
class _CategorySpec:
    weight: float  # share of ordinary expense rows (relative)
    median: float  # median amount before merchant/template/item multipliers
    sigma: float  # residual log-normal sigma
    pay: tuple  # mix over PAYMENT_METHODS
    receipt: float  # probability of a receipt URL
    merchants: tuple[str, ...]  # most popular first; names may recur in other categories
    local_suffixes: tuple[str, ...]  # generated local merchants: "<Town> <suffix>"
    templates: tuple[tuple[str, float, float], ...]  # (text, amount multiplier, weight)
    items: tuple[tuple[str, float], ...] = (("", 1.0),)  # (name, amount multiplier)


_TOWNS = (
    "Riverside", "Oakwood", "Maple", "Lakeside", "Northgate", "Westfield", "Hillcrest",
    "Brookside", "Cedar", "Pinecrest", "Harbor", "Summit", "Fairview", "Greenville",
    "Ashford", "Kingsley", "Elmwood", "Bayview", "Stonebridge", "Millbrook", "Redwood",
    "Silverlake", "Willow Creek", "Eastport",
)  # fmt: skip
#: towns only used for merchants that appear with the `new_merchants` drift
_NEW_TOWNS = (
    "Aurora", "Bellwood", "Copperfield", "Driftwood", "Evergreen", "Foxhall", "Glenmoor",
    "Hawthorne", "Ironwood", "Juniper", "Kestrel", "Larkspur",
)  # fmt: skip
_CITIES = (
    ("New York", 1.3), ("Chicago", 1.0), ("San Francisco", 1.3), ("Austin", 0.9),
    ("Seattle", 1.1), ("Boston", 1.1), ("Denver", 0.9), ("Atlanta", 0.9), ("London", 2.4),
    ("Toronto", 1.5), ("Miami", 1.0), ("Los Angeles", 1.2),
)  # fmt: skip
_VEHICLES = (("delivery van", 1.2), ("company truck", 1.5), ("sales car", 0.9))
_CLIENT_PREFIX = (
    *_TOWNS,
    "Acme", "Apex", "Blue Ridge", "Brightline", "Crescent", "Evergreen Valley", "Granite",
    "Horizon", "Keystone", "Lighthouse", "Meridian", "Nimbus", "Orchard", "Pioneer",
    "Sterling", "Vertex",
)  # fmt: skip
_CLIENT_NOUN = (
    "Logistics", "Dental", "Architects", "Media", "Foods", "Consulting", "Biotech", "Realty",
    "Health", "Studios", "Retail", "Capital", "Engineering", "Hospitality", "Analytics",
)  # fmt: skip
_CLIENT_SUFFIX = ("Inc", "LLC", "Corp", "Ltd", "Group", "Co.")
_UNKNOWN_MERCHANTS = tuple(
    f"{a} {b}"
    for a in ("Zentrix", "Qorvax", "Omnibay", "Vexlo", "Nexora", "Stratova", "Kalvex", "Ombrix")
    for b in ("Trading FZE", "Global Ltd", "Imports", "Digital Goods", "Electronics Outlet")
)

# fmt: off
_CATEGORIES: dict[str, _CategorySpec] = {
    "bad_debts": _CategorySpec(
        0.8, 1800, 0.36, _pay(0, 0, 0.9, 0, 0.1, 0), 0.0,
        merchants=(),
        local_suffixes=(),
        templates=(
            ("Write-off invoice INV-{number}", 1.0, 4),
            ("Uncollectible receivable - {merchant}", 1.0, 3),
            ("Bad debt provision {month}", 2.0, 1),
        ),
    ),
    "computer_equipment": _CategorySpec(
        4, 700, 0.2, _pay(0.66, 0.1, 0.2, 0.005, 0.005, 0.03), 0.8,
        merchants=(
            "Amazon", "Apple", "Best Buy", "Dell", "Lenovo", "HP", "CDW", "B&H Photo", "Newegg",
            "Micro Center",
        ),
        local_suffixes=("Computers", "PC Store", "Tech Supply"),
        templates=(
            ("{item} - {merchant}", 1.0, 5),
            ("New {item} for staff", 1.0, 3),
            ("IT equipment order #{number}", 2.0, 1),
            ("{merchant} order #{number}", 1.0, 1),
        ),
        items=(
            ("laptop", 2.0), ("monitor", 0.45), ("docking station", 0.3),
            ("keyboard and mouse", 0.12), ("tablet", 0.9), ("desktop workstation", 2.5),
            ("webcam", 0.12), ("headset", 0.15), ("external SSD", 0.2),
        ),
    ),
    "entertainment": _CategorySpec(
        3, 140, 0.28, _pay(0.7, 0.1, 0.1, 0.05, 0.005, 0.045), 0.5,
        merchants=(
            "Ticketmaster", "Topgolf", "Eventbrite", "AMC Theatres", "OpenTable", "Dave & Buster's",
            "StubHub", "Live Nation",
        ),
        local_suffixes=("Cinema", "Bowling", "Escape Rooms", "Theatre", "Golf Club"),
        templates=(
            ("Tickets - {item}", 1.0, 4),
            ("Team outing at {merchant}", 3.0, 3),
            ("Client entertainment - {merchant}", 2.0, 2),
            ("Holiday party {year}", 10.0, 1),
            ("{merchant} booking #{number}", 1.0, 2),
        ),
        items=(
            ("basketball game", 1.0), ("concert", 0.9), ("theatre show", 1.1),
            ("comedy night", 0.6), ("baseball game", 0.8), ("gala dinner", 2.0),
        ),
    ),
    "food": _CategorySpec(
        9, 28, 0.24, _pay(0.47, 0.3, 0.02, 0.18, 0.0, 0.03), 0.6,
        merchants=(
            "Costco", "Whole Foods Market", "Uber Eats", "Trader Joe's", "Walmart", "Starbucks",
            "Safeway", "Kroger", "Instacart", "Sprouts Farmers Market", "Wegmans", "DoorDash",
        ),
        local_suffixes=("Bakery", "Deli", "Grocers", "Fresh Market", "Coffee Roasters"),
        templates=(
            ("Groceries - {merchant}", 1.0, 4),
            ("Office kitchen restock {month}", 2.5, 2),
            ("{item} for the office", 0.8, 3),
            ("Coffee and pastries - {merchant}", 0.5, 2),
            ("Team lunch - {merchant}", 3.0, 2),
            ("{merchant} order #{number}", 1.0, 2),
        ),
        items=(
            ("coffee beans", 0.8), ("fresh fruit", 0.6), ("bottled water", 0.5), ("snacks", 0.7),
            ("milk and tea", 0.4), ("sandwich platters", 2.5), ("birthday cake", 1.5),
        ),
    ),
    "fuel": _CategorySpec(
        8, 55, 0.2, _pay(0.55, 0.3, 0.0, 0.14, 0.005, 0.005), 0.4,
        merchants=(
            "Shell", "BP", "Chevron", "ExxonMobil", "Costco", "Texaco", "Circle K", "Speedway",
            "WEX Fleet Card",
        ),
        local_suffixes=("Gas Station", "Fuel Stop", "Service Station"),
        templates=(
            ("Fuel - {merchant}", 1.0, 5),
            ("Diesel for {item}", 1.4, 2),
            ("Gas fill-up {merchant}", 1.0, 3),
            ("Fleet fuel card {month}", 8.0, 1),
            ("{merchant} purchase #{number}", 1.0, 1),
        ),
        items=(*_VEHICLES, ("generator", 0.7)),
    ),
    "furniture": _CategorySpec(
        2, 380, 0.24, _pay(0.55, 0.05, 0.3, 0.0, 0.095, 0.005), 0.7,
        merchants=(
            "IKEA", "Herman Miller", "Steelcase", "Wayfair", "Office Depot", "Staples", "Costco",
        ),
        local_suffixes=("Furniture", "Interiors"),
        templates=(
            ("{item} - {merchant}", 1.0, 5),
            ("Office furniture order #{number}", 2.5, 2),
            ("Furniture delivery and assembly", 0.3, 1),
        ),
        items=(
            ("office chair", 1.0), ("standing desk", 1.8), ("conference table", 4.0),
            ("filing cabinet", 0.7), ("bookshelf", 0.5), ("reception sofa", 3.0),
            ("desk lamp", 0.12),
        ),
    ),
    "hardware": _CategorySpec(
        4, 120, 0.28, _pay(0.55, 0.25, 0.05, 0.1, 0.045, 0.005), 0.6,
        merchants=(
            "Home Depot", "Amazon", "Lowe's", "Best Buy", "Ace Hardware", "Harbor Freight",
            "Grainger", "Menards", "Newegg",
        ),
        local_suffixes=("Hardware", "Tools & Supply", "Lumber"),
        templates=(
            ("{item} - {merchant}", 1.0, 4),
            ("Tools and hardware #{number}", 1.0, 2),
            ("Hardware store run - {merchant}", 0.6, 2),
            ("{merchant} order #{number}", 1.0, 1),
        ),
        items=(
            ("power drill", 1.0), ("ladder", 1.2), ("network switch", 1.8), ("hard drives", 1.0),
            ("router", 1.3), ("server rack", 6.0), ("cables and adapters", 0.2),
            ("shelving brackets", 0.4), ("padlocks", 0.2),
        ),
    ),
    "home_office": _CategorySpec(
        3, 110, 0.24, _pay(0.55, 0.15, 0.25, 0.0, 0.0, 0.05), 0.6,
        merchants=("Amazon", "IKEA", "Wayfair", "Best Buy", "Xfinity", "Target"),
        local_suffixes=("Home Supply",),
        templates=(
            ("Home office {item}", 1.0, 4),
            ("Home office stipend {month}", 1.5, 3),
            ("Home internet {month}", 0.6, 2),
            ("{item} for remote work", 1.0, 2),
            ("{merchant} order #{number}", 1.0, 1),
        ),
        items=(
            ("desk", 2.0), ("chair", 1.8), ("monitor arm", 0.4), ("desk lamp", 0.3),
            ("webcam", 0.5), ("noise-cancelling headphones", 1.2), ("ergonomic keyboard", 0.6),
        ),
    ),
    "maintenance": _CategorySpec(
        4, 200, 0.24, _pay(0.3, 0.05, 0.45, 0.05, 0.145, 0.005), 0.5,
        merchants=(
            "Home Depot", "ServiceMaster", "Lowe's", "ABM Industries", "Mr. Handyman", "Terminix",
            "Orkin", "Otis Elevator", "Cintas",
        ),
        local_suffixes=("Property Services", "Facilities", "Cleaning Services", "HVAC"),
        templates=(
            ("Scheduled maintenance - {item}", 1.0, 4),
            ("Cleaning service {month}", 1.5, 3),
            ("Pest control visit", 0.6, 1),
            ("Service call - {merchant}", 0.8, 2),
            ("Work order #{number}", 1.0, 2),
        ),
        items=(
            ("HVAC system", 1.5), ("elevator", 3.0), ("fire extinguishers", 0.4),
            ("landscaping", 0.8), ("carpets", 0.7), ("windows", 0.5), ("plumbing", 0.8),
            ("roof gutters", 0.6),
        ),
    ),
    "meals_entertainment": _CategorySpec(
        6, 70, 0.24, _pay(0.75, 0.12, 0.03, 0.08, 0.005, 0.015), 0.7,
        merchants=(
            "Uber Eats", "The Capital Grille", "Starbucks", "Olive Garden", "DoorDash",
            "Ruth's Chris Steak House", "Cheesecake Factory", "Nobu", "OpenTable", "Topgolf",
        ),
        local_suffixes=("Bistro", "Grill", "Steakhouse", "Trattoria", "Brasserie"),
        templates=(
            ("Client dinner at {merchant}", 2.0, 4),
            ("Business lunch - {merchant}", 1.0, 4),
            ("Team lunch - {merchant}", 1.2, 2),
            ("Drinks with {item}", 0.8, 2),
            ("Client entertainment - {merchant}", 2.5, 1),
            ("{merchant} order #{number}", 1.0, 1),
        ),
        items=(
            ("a prospective client", 1.0), ("investors", 1.3), ("the sales team", 1.5),
            ("a partner", 0.8),
        ),
    ),
    "office_supplies": _CategorySpec(
        8, 40, 0.24, _pay(0.64, 0.2, 0.05, 0.05, 0.03, 0.03), 0.6,
        merchants=(
            "Amazon", "Staples", "Office Depot", "Walmart", "Costco", "W.B. Mason", "Quill",
            "Uline",
        ),
        local_suffixes=("Stationers", "Office Supply", "Paper Co."),
        templates=(
            ("{item} - {merchant}", 1.0, 4),
            ("Office supplies order #{number}", 1.5, 3),
            ("Printer paper and toner", 2.0, 2),
            ("Supplies order - {merchant}", 1.2, 2),
            ("{merchant} order #{number}", 1.0, 2),
        ),
        items=(
            ("printer paper", 0.8), ("toner cartridges", 2.5), ("pens and notebooks", 0.5),
            ("sticky notes", 0.2), ("binders", 0.4), ("envelopes", 0.3),
            ("whiteboard markers", 0.3), ("desk organisers", 0.8),
        ),
    ),
    "other": _CategorySpec(
        3, 60, 0.4, _pay(0.4, 0.2, 0.15, 0.15, 0.05, 0.05), 0.3,
        merchants=(
            "USPS", "FedEx", "UPS", "DHL", "Chamber of Commerce", "American Red Cross",
            "Bank of America", "Chase",
        ),
        local_suffixes=(),
        templates=(
            ("Postage and shipping - {merchant}", 0.5, 3),
            ("Bank fees {month}", 0.3, 2),
            ("Membership dues - {merchant}", 3.0, 1),
            ("Charitable donation to {merchant}", 3.0, 1),
            ("Miscellaneous expense", 1.0, 2),
            ("Business licence renewal", 4.0, 1),
        ),
    ),
    "professional_fees": _CategorySpec(
        4, 950, 0.24, _pay(0.1, 0.0, 0.7, 0.0, 0.195, 0.005), 0.4,
        merchants=("Deloitte", "KPMG", "PwC", "Ernst & Young", "LegalZoom", "Upwork", "Fiverr"),
        local_suffixes=("Law Group", "CPA", "Consulting", "& Partners LLP"),
        templates=(
            ("Legal services - {month}", 1.5, 3),
            ("Accounting fees - {item}", 1.0, 3),
            ("Consulting invoice {number}", 1.2, 2),
            ("Retainer - {merchant}", 2.0, 1),
            ("Freelancer payment - {item}", 0.5, 2),
        ),
        items=(
            ("tax preparation", 1.5), ("annual audit", 4.0), ("bookkeeping", 0.6),
            ("payroll services", 0.5), ("contract review", 0.8), ("trademark filing", 0.7),
            ("web design", 1.2), ("copywriting", 0.4),
        ),
    ),
    "rent": _CategorySpec(
        0.8, 400, 0.24, _pay(0.05, 0.0, 0.8, 0.0, 0.15, 0.0), 0.2,
        merchants=("WeWork", "Regus", "Public Storage", "Extra Space Storage"),
        local_suffixes=(
            "Properties LLC", "Realty", "Commercial Leasing", "Estates", "Property Management",
        ),
        templates=(
            ("Office rent {month} {year}", 9.0, 0),
            ("Monthly rent - {merchant}", 9.0, 0),
            ("Meeting room hire - {merchant}", 0.5, 3),
            ("Storage unit {month}", 0.5, 3),
            ("Coworking day passes", 0.3, 2),
            ("Warehouse space {month}", 4.0, 1),
        ),
    ),
    "repairs": _CategorySpec(
        4, 300, 0.28, _pay(0.35, 0.05, 0.35, 0.1, 0.145, 0.005), 0.5,
        merchants=(
            "Home Depot", "Lowe's", "Mr. Handyman", "Roto-Rooter", "Geek Squad", "uBreakiFix",
        ),
        local_suffixes=("Handyman", "Plumbing", "Electric", "Glass & Glazing", "Property Services"),
        templates=(
            ("Repair of {item}", 1.0, 4),
            ("Emergency repair - {item}", 2.0, 2),
            ("Service call - {merchant}", 0.8, 2),
            ("Work order #{number}", 1.0, 2),
            ("Replacement parts for {item}", 0.5, 2),
        ),
        items=(
            ("HVAC system", 1.5), ("broken window", 0.8), ("leaking pipe", 0.7), ("door lock", 0.3),
            ("laptop screen", 0.6), ("printer", 0.4), ("water heater", 1.5), ("roof", 2.5),
        ),
    ),
    "software": _CategorySpec(
        6, 45, 0.2, _pay(0.75, 0.03, 0.17, 0.0, 0.0, 0.05), 0.5,
        merchants=(
            "Adobe", "Microsoft", "Slack", "Atlassian", "GitHub", "Notion", "Dropbox", "Salesforce",
            "Zoom", "Google Workspace", "JetBrains", "Figma", "HubSpot", "Intuit QuickBooks",
            "Apple", "Amazon Web Services",
        ),
        local_suffixes=("Software", "Labs"),
        templates=(
            ("{merchant} monthly subscription", 1.0, 5),
            ("{merchant} annual licence", 12.0, 2),
            ("Additional seats - {merchant}", 0.5, 2),
            ("Software licence renewal {year}", 10.0, 1),
            ("{merchant} invoice {number}", 1.0, 2),
            ("Cloud hosting {month}", 6.0, 1),
        ),
    ),
    "supplies": _CategorySpec(
        6, 65, 0.28, _pay(0.55, 0.2, 0.1, 0.05, 0.05, 0.05), 0.6,
        merchants=(
            "Amazon", "Costco", "Uline", "Staples", "Walmart", "Grainger", "Sam's Club",
            "Global Industrial", "Fastenal",
        ),
        local_suffixes=("Packaging", "Janitorial Supply", "Wholesale"),
        templates=(
            ("{item} - {merchant}", 1.0, 4),
            ("Cleaning supplies {month}", 1.0, 2),
            ("Packaging materials order", 1.8, 2),
            ("Supplies order - {merchant}", 1.2, 3),
            ("{merchant} order #{number}", 1.0, 2),
        ),
        items=(
            ("shipping boxes", 1.2), ("packing tape", 0.3), ("cleaning products", 0.8),
            ("paper towels", 0.5), ("safety gloves", 0.4), ("bubble wrap", 0.6),
            ("trash bags", 0.3), ("hand soap", 0.25),
        ),
    ),
    "telephone": _CategorySpec(
        2, 70, 0.16, _pay(0.4, 0.08, 0.5, 0.0, 0.02, 0.0), 0.3,
        merchants=(
            "Verizon", "AT&T", "T-Mobile", "Comcast Business", "RingCentral", "Vonage", "Zoom",
            "Spectrum Business",
        ),
        local_suffixes=(),
        templates=(
            ("{merchant} phone bill {month}", 1.0, 4),
            ("Mobile plan - {month}", 0.8, 3),
            ("Business internet and phone {month}", 1.8, 2),
            ("New handset - {item}", 8.0, 1),
            ("Conference call minutes {month}", 0.4, 1),
        ),
        items=(("iPhone 15", 1.2), ("Pixel 8", 0.9), ("Galaxy S24", 1.0)),
    ),
    "training": _CategorySpec(
        3, 300, 0.28, _pay(0.64, 0.0, 0.3, 0.0, 0.03, 0.03), 0.5,
        merchants=(
            "Udemy", "Coursera", "LinkedIn Learning", "O'Reilly Media", "Pluralsight",
            "General Assembly", "Dale Carnegie", "Eventbrite",
        ),
        local_suffixes=("Training Institute", "Academy", "Learning Center"),
        templates=(
            ("Course: {item}", 1.0, 4),
            ("Conference registration - {item}", 4.0, 2),
            ("{merchant} subscription {month}", 0.15, 2),
            ("Workshop fee - {merchant}", 1.5, 2),
            ("Certification exam {item}", 1.2, 1),
        ),
        items=(
            ("Python for data analysis", 1.0), ("project management", 1.1),
            ("leadership skills", 1.3), ("cloud architecture", 1.4), ("first aid", 0.5),
            ("bookkeeping basics", 0.7), ("sales negotiation", 1.2),
            ("cybersecurity awareness", 0.6),
        ),
    ),
    "travel": _CategorySpec(
        7, 260, 0.24, _pay(0.8, 0.05, 0.05, 0.05, 0.0, 0.05), 0.7,
        merchants=(
            "Delta Air Lines", "United Airlines", "Marriott", "Uber", "American Airlines", "Hilton",
            "Southwest Airlines", "Airbnb", "Expedia", "Lyft", "Hyatt", "Booking.com", "Amtrak",
            "Hertz", "Enterprise Rent-A-Car",
        ),
        local_suffixes=(),
        templates=(
            ("Flight to {item}", 1.6, 3),
            ("Hotel - {item}", 1.3, 3),
            ("{merchant} ride", 0.12, 3),
            ("Car rental in {item}", 0.9, 1),
            ("Train ticket to {item}", 0.4, 1),
            ("Travel booking #{number}", 1.0, 1),
        ),
        items=_CITIES,
    ),
    "vehicle": _CategorySpec(
        2, 650, 0.24, _pay(0.15, 0.05, 0.6, 0.0, 0.2, 0.0), 0.5,
        merchants=(
            "Enterprise Fleet Management", "Ford Credit", "Firestone Complete Auto Care",
            "Toyota Financial Services", "DMV", "Ryder", "Penske Truck Leasing", "Hertz",
        ),
        local_suffixes=("Motors", "Auto Sales", "Car Leasing"),
        templates=(
            ("Vehicle lease payment {month}", 1.0, 4),
            ("Vehicle registration renewal - {item}", 0.4, 2),
            ("Down payment on {item}", 12.0, 1),
            ("Vehicle insurance {month}", 0.8, 2),
            ("Truck rental - {merchant}", 0.6, 2),
            ("Vehicle service - {item}", 0.5, 1),
        ),
        items=(*_VEHICLES, ("cargo trailer", 0.5)),
    ),
    "vehicle_expenses": _CategorySpec(
        5, 90, 0.28, _pay(0.6, 0.25, 0.05, 0.09, 0.005, 0.005), 0.4,
        merchants=(
            "Shell", "Jiffy Lube", "BP", "SpotHero", "Chevron", "Midas",
            "Firestone Complete Auto Care", "Pep Boys", "ParkMobile", "E-ZPass",
        ),
        local_suffixes=("Car Wash", "Auto Care", "Tire & Lube", "Parking Garage"),
        templates=(
            ("Oil change - {item}", 0.8, 3),
            ("Parking - {merchant}", 0.25, 4),
            ("Toll charges {month}", 0.5, 2),
            ("Car wash {merchant}", 0.3, 2),
            ("New tires for {item}", 6.0, 1),
            ("{merchant} purchase #{number}", 0.6, 1),
            ("Vehicle service - {item}", 3.0, 2),
        ),
        items=_VEHICLES,
    ),
}

#: categories that only appear with the `unseen_categories` drift (labels outside the 22)
_UNSEEN: dict[str, _CategorySpec] = {
    "marketing": _CategorySpec(
        0, 400, 0.32, _pay(0.8, 0.0, 0.15, 0.0, 0.0, 0.05), 0.5,
        merchants=("Google Ads", "Meta Ads", "LinkedIn Ads", "Mailchimp", "Canva"),
        local_suffixes=(),
        templates=(
            ("Ad campaign {month} - {merchant}", 1.0, 3),
            ("Sponsored posts {month}", 0.6, 2),
            ("Marketing agency retainer", 5.0, 1),
        ),
    ),
    "insurance": _CategorySpec(
        0, 350, 0.24, _pay(0.1, 0.0, 0.85, 0.0, 0.05, 0.0), 0.3,
        merchants=("Hiscox", "State Farm", "Next Insurance", "Travelers"),
        local_suffixes=(),
        templates=(
            ("Business insurance premium {month}", 1.0, 3),
            ("Liability insurance - {merchant}", 1.5, 2),
        ),
    ),
    "utilities": _CategorySpec(
        0, 250, 0.24, _pay(0.2, 0.0, 0.75, 0.0, 0.05, 0.0), 0.3,
        merchants=("PG&E", "Con Edison", "Duke Energy", "City Water Department"),
        local_suffixes=(),
        templates=(
            ("Electricity bill {month}", 1.0, 3),
            ("Water and sewer {month}", 0.4, 2),
        ),
    ),
    "cloud_services": _CategorySpec(
        0, 600, 0.32, _pay(0.7, 0.0, 0.3, 0.0, 0.0, 0.0), 0.4,
        merchants=("Snowflake", "Datadog", "Cloudflare", "DigitalOcean"),
        local_suffixes=(),
        templates=(
            ("Cloud usage {month} - {merchant}", 1.0, 3),
            ("Data platform credits", 3.0, 1),
        ),
    ),
}
# fmt: on

_MISSPELT: dict[str, str] = {
    "bad_debts": "bad_debt", "computer_equipment": "computer_equipmnt",
    "entertainment": "entertainmet", "food": "fod", "fuel": "feul", "furniture": "furnature",
    "hardware": "hardwre", "home_office": "home_ofice", "maintenance": "maintainance",
    "meals_entertainment": "meals_entertainmnt", "office_supplies": "office_suplies",
    "other": "othr", "professional_fees": "profesional_fees", "rent": "rnet",
    "repairs": "repiars", "software": "sofware", "supplies": "suplies",
    "telephone": "telephon", "training": "trainning", "travel": "travl",
    "vehicle": "vehical", "vehicle_expenses": "vehicle_expense",
}  # fmt: skip

_GENERIC_TEMPLATES = (
    ("Card payment", 1.0, 3),
    ("POS purchase {number}", 1.0, 2),
    ("Invoice {number}", 1.0, 2),
    ("Direct debit", 1.0, 1),
    ("Online payment ref {number}", 1.0, 1),
    ("Purchase", 1.0, 1),
)
_INCOME_TEMPLATES = (
    ("Invoice INV-{number} - {merchant}", 1.0, 5),
    ("Payment received - {merchant}", 1.0, 3),
    ("Consulting services {month}", 1.3, 2),
    ("Project milestone {number} - {merchant}", 2.5, 1),
    ("Product sales {month}", 0.4, 2),
    ("Monthly retainer - {merchant}", 1.0, 0),
)
INCOME_MEDIAN, INCOME_SIGMA = 2400.0, 0.55
_CATALOGUE_SEED = 20_240_101  # the simulated business; independent of the generation seed


# =========================================================================== catalogue build

SLOT_KINDS = ("", "merchant", "item", "number", "month", "year")
_SLOT_RE = re.compile(r"\{(merchant|item|number|month|year)\}")
MAX_SLOTS = 3


@dataclass(frozen=True)
class _GroupedChoice:
    """Weighted choice within groups, vectorised: group g's cumulative weights live in (g, g+1]."""

    bounds: NDArray[np.float64]
    values: NDArray[np.int64]
    last: NDArray[np.int64]  # last flat position of each group

    @classmethod
    def build(cls, groups: Sequence[Sequence[tuple[int, float]]]) -> _GroupedChoice:
        bounds: list[NDArray[np.float64]] = []
        values: list[int] = []
        last: list[int] = []
        for g, pairs in enumerate(groups):
            weights = np.array([w for _, w in pairs if w > 0], dtype=np.float64)
            if weights.size == 0:  # an empty group samples -1 ("none")
                bounds.append(np.array([g + 1.0]))
                values.append(-1)
            else:
                cum = np.cumsum(weights / weights.sum())
                cum[-1] = 1.0
                bounds.append(g + cum)
                values.extend(v for v, w in pairs if w > 0)
            last.append(len(values) - 1)
        return cls(np.concatenate(bounds), np.asarray(values, dtype=np.int64), np.asarray(last))

    def sample(self, group: NDArray[np.integer], rng: np.random.Generator) -> NDArray[np.int64]:
        u = rng.random(group.size)
        pos = np.searchsorted(self.bounds, group + u, side="right")
        return self.values[np.minimum(pos, self.last[group])]


def _zipf(n: int, exponent: float = 0.9) -> list[float]:
    return [1.0 / (rank + 1.5) ** exponent for rank in range(n)]


@dataclass
class Catalogue:
    """The simulated business: merchants, clients, templates, items and their price levels."""

    party_names: NDArray[np.object_]
    party_level: NDArray[np.float64]
    category_labels: NDArray[np.object_]  # 22 known, then unseen, then misspellings of the 22
    n_categories: int
    unseen_category_codes: NDArray[np.int16]
    misspelt_label_codes: NDArray[np.int16]  # indexed by known category code
    payment_labels: NDArray[np.object_]  # 6 known, then their truncations
    payment_typo_codes: NDArray[np.int16]
    # templates: literal pieces and slot kinds, amount multiplier, uses-item flag
    template_literals: NDArray[np.object_]  # shape (MAX_SLOTS + 1, n_templates)
    template_slots: NDArray[np.int8]  # shape (MAX_SLOTS, n_templates)
    template_log_mult: NDArray[np.float64]
    template_uses_item: NDArray[np.bool_]
    item_names: NDArray[np.object_]
    item_log_mult: NDArray[np.float64]
    # per generative category (known + unseen)
    log_median: NDArray[np.float64]
    sigma: NDArray[np.float64]
    receipt_p: NDArray[np.float64]
    unusual_payment: NDArray[np.int16]  # the rarest method of each category
    log_high: NDArray[np.float64]  # log multiplier of the category's priciest template × item
    category_choice: _GroupedChoice
    merchant_choice: _GroupedChoice
    template_choice: _GroupedChoice
    item_choice: _GroupedChoice
    payment_choice: _GroupedChoice
    misfile_choice: _GroupedChoice  # another category of the same confusable group
    new_merchant_choice: _GroupedChoice
    generic_choice: _GroupedChoice
    income_choice: _GroupedChoice
    client_choice: _GroupedChoice
    unknown_choice: _GroupedChoice
    landlord_choice: _GroupedChoice
    recurring_templates: dict[str, int] = field(default_factory=dict)

    def payment_code(self, method: str) -> int:
        """Code of a known payment method."""
        return _PAY[method]

    def sample_new_merchant(
        self, categories: NDArray[np.integer], rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """Merchants (party codes) from each category's pool of never-before-seen names."""
        return self.new_merchant_choice.sample(np.asarray(categories, dtype=np.int64), rng)


@functools.cache
def catalogue() -> Catalogue:
    """The fixed catalogue of the simulated business (built once per process)."""
    rng = np.random.default_rng(_CATALOGUE_SEED)
    specs = {**_CATEGORIES, **_UNSEEN}
    names: dict[str, int] = {}
    levels: list[float] = []

    def party(name: str, level_sigma: float = 0.3) -> int:
        if name not in names:
            names[name] = len(names)
            levels.append(float(rng.normal(0.0, level_sigma)))
        return names[name]

    towns = np.array(_TOWNS, dtype=object)
    merchant_groups: list[list[tuple[int, float]]] = []
    landlords: list[tuple[int, float]] = []
    clients = [
        party(f"{p} {n} {s}", 0.5)
        for p, n, s in zip(
            rng.choice(_CLIENT_PREFIX, 400),
            rng.choice(_CLIENT_NOUN, 400),
            rng.choice(_CLIENT_SUFFIX, 400),
            strict=True,
        )
    ]
    clients = list(dict.fromkeys(clients))[:300]
    for cat_name, spec in specs.items():
        merchants = list(spec.merchants)
        if spec.local_suffixes:
            combos = [
                f"{t} {s}" for t in towns[rng.permutation(towns.size)] for s in spec.local_suffixes
            ]
            local = [
                combos[i] for i in rng.choice(len(combos), size=min(18, len(combos)), replace=False)
            ]
            if cat_name == "rent":
                landlords = [(party(n), 1.0) for n in local]
            else:
                merchants += local
        if cat_name == "bad_debts":
            merchant_groups.append(
                [(c, w) for c, w in zip(clients, _zipf(len(clients)), strict=True)]
            )
        else:
            codes = [party(m) for m in merchants]
            merchant_groups.append(list(zip(codes, _zipf(len(codes)), strict=True)))
    client_weights = _zipf(len(clients), 0.7)

    # pools that the base generator never draws from: new merchants (drift) and unknown ones
    base_names = set(names)
    new_groups: list[list[tuple[int, float]]] = []
    for cat_name, spec in specs.items():
        suffixes = spec.local_suffixes or ("Services", "Supply Co.")
        if cat_name == "bad_debts":
            pool = [
                f"{t} {n} {s}"
                for t in _NEW_TOWNS
                for n, s in zip(_CLIENT_NOUN, _CLIENT_SUFFIX * 3, strict=False)
            ]
        else:
            pool = [f"{t} {s}" for t in _NEW_TOWNS for s in suffixes]
        pool = [n for n in pool if n not in base_names][:24]
        codes = [party(n) for n in pool]
        new_groups.append(list(zip(codes, _zipf(len(codes)), strict=True)))
    unknown = [(party(n, 0.0), 1.0) for n in _UNKNOWN_MERCHANTS]

    # templates: per category, then generic, then income
    literals: list[list[str]] = []
    slots: list[list[int]] = []
    log_mult: list[float] = []
    uses_item: list[bool] = []
    index: dict[tuple[str, str], int] = {}

    def template(owner: str, text: str, mult: float) -> int:
        pieces = _SLOT_RE.split(text)
        lits, kinds = pieces[0::2], [SLOT_KINDS.index(k) for k in pieces[1::2]]
        if len(kinds) > MAX_SLOTS:
            raise ValueError(f"template {text!r} has more than {MAX_SLOTS} slots")
        lits += [""] * (MAX_SLOTS + 1 - len(lits))
        kinds += [0] * (MAX_SLOTS - len(kinds))
        literals.append(lits)
        slots.append(kinds)
        log_mult.append(float(np.log(mult)))
        uses_item.append(SLOT_KINDS.index("item") in kinds)
        index[(owner, text)] = len(log_mult) - 1
        return index[(owner, text)]

    template_groups = [
        [(template(c, t, m), w) for t, m, w in spec.templates] for c, spec in specs.items()
    ]
    generic = [(template("generic", t, m), w) for t, m, w in _GENERIC_TEMPLATES]
    income = [(template("income", t, m), w) for t, m, w in _INCOME_TEMPLATES]

    item_names: list[str] = []
    item_mult: list[float] = []
    item_groups: list[list[tuple[int, float]]] = []
    for spec in specs.values():
        group = []
        for name, mult in spec.items:
            group.append((len(item_names), 1.0))
            item_names.append(name)
            item_mult.append(float(np.log(mult)))
        item_groups.append(group)

    known = list(EXPENSE_CATEGORIES)
    if sorted(_CATEGORIES) != sorted(known):
        raise RuntimeError("synthetic catalogue is out of step with columns.EXPENSE_CATEGORIES")
    order = [*known, *_UNSEEN]  # codes follow EXPENSE_CATEGORIES, then unseen
    pos = {c: i for i, c in enumerate(specs)}
    perm = [pos[c] for c in order]
    n_known, n_all = len(known), len(order)
    labels = np.array([*order, *(_MISSPELT[c] for c in known)], dtype=object)
    pay_labels = np.array([*PAYMENT_METHODS, *(m[:-1] for m in PAYMENT_METHODS)], dtype=object)
    ordered = [specs[c] for c in order]

    def reorder(groups: list[list[tuple[int, float]]]) -> _GroupedChoice:
        return _GroupedChoice.build([groups[i] for i in perm])

    return Catalogue(
        party_names=np.array(list(names), dtype=object),
        party_level=np.array(levels, dtype=np.float64),
        category_labels=labels,
        n_categories=n_known,
        unseen_category_codes=np.arange(n_known, n_all, dtype=np.int16),
        misspelt_label_codes=np.arange(n_all, n_all + n_known, dtype=np.int16),
        payment_labels=pay_labels,
        payment_typo_codes=np.arange(
            len(PAYMENT_METHODS), 2 * len(PAYMENT_METHODS), dtype=np.int16
        ),
        template_literals=np.array(literals, dtype=object).T.copy(),
        template_slots=np.array(slots, dtype=np.int8).T.copy(),
        template_log_mult=np.array(log_mult),
        template_uses_item=np.array(uses_item),
        item_names=np.array(item_names, dtype=object),
        item_log_mult=np.array(item_mult),
        log_median=np.log([s.median for s in ordered]),
        sigma=np.array([s.sigma for s in ordered]),
        receipt_p=np.array([s.receipt for s in ordered]),
        unusual_payment=np.array([int(np.argmin(s.pay)) for s in ordered], dtype=np.int16),
        log_high=np.log(
            [
                max(
                    m * (max(x for _, x in s.items) if "{item}" in t else 1.0)
                    for t, m, w in s.templates
                    if w > 0
                )
                for s in ordered
            ]
        ),
        misfile_choice=_GroupedChoice.build(
            [
                [(order.index(o), 1.0) for g in CONFUSABLE_GROUPS if c in g for o in g if o != c]
                for c in order
            ]
        ),
        category_choice=_GroupedChoice.build([[(i, specs[c].weight) for i, c in enumerate(order)]]),
        merchant_choice=reorder(merchant_groups),
        template_choice=reorder(template_groups),
        item_choice=reorder(item_groups),
        payment_choice=_GroupedChoice.build([list(enumerate(s.pay)) for s in ordered]),
        new_merchant_choice=reorder(new_groups),
        generic_choice=_GroupedChoice.build([generic]),
        income_choice=_GroupedChoice.build([income]),
        client_choice=_GroupedChoice.build([list(zip(clients, client_weights, strict=True))]),
        unknown_choice=_GroupedChoice.build([unknown]),
        landlord_choice=_GroupedChoice.build([landlords]),
        recurring_templates={
            "rent_month": index[("rent", "Office rent {month} {year}")],
            "rent_landlord": index[("rent", "Monthly rent - {merchant}")],
            "software": index[("software", "{merchant} monthly subscription")],
            "telephone": index[("telephone", "{merchant} phone bill {month}")],
            "retainer": index[("income", "Monthly retainer - {merchant}")],
        },
    )
