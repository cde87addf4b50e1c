"""Writes services/model/fixtures/bench_texts.json: the texts that every
embedding benchmark (Rust backends and ort_bench.py) runs on, so figures are
comparable across backends and over time.

    target/py-model/bin/python scripts/model/make_bench_texts.py [model_dir]

Three buckets of 64 email-like English texts, sized in tokens as counted by
the model's tokenizer including [CLS]/[SEP]:
  short   subject lines, about 15 tokens
  medium  one paragraph, about 70 tokens
  long    a whole body, about 250 tokens and never more than 256, so that no
          backend's truncation is exercised and all do the same work
The generator is a small template grammar with a fixed seed, so the output is
byte-identical on every run (for the same tokenizer). Varied vocabulary
matters: a benchmark over a handful of repeated words would understate the
tokenizer's cost and make every text nearly the same length.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "services", "model", "fixtures", "bench_texts.json")

SEED = 20240314
PER_BUCKET = 64
MAX_TOKENS = 256
# Inclusive token windows per bucket; texts outside are regenerated.
WINDOWS = {"short": (12, 19), "medium": (62, 78), "long": (240, MAX_TOKENS)}

FIRST = ["Anna", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jonas", "Kemi", "Lucas",
         "Maya", "Nikhil", "Olivia", "Pedro", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zoe"]
LAST = ["Andersen", "Brooks", "Castillo", "Dubois", "Eriksson", "Fischer", "Gupta", "Hughes", "Ivanova", "Jensen",
        "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrova", "Rossi", "Schmidt", "Tanaka", "Walsh"]
COMPANY = ["Northwind Analytics", "Bluebird Logistics", "Copperleaf Studio", "Harbor & Pine", "Lumen Health",
           "Quarry Outdoor", "Redwood Finance", "Saltmarsh Coffee", "Tidewater Insurance", "Vantage Robotics",
           "Willow Lane Books", "Fernhill Dental", "Ironclad Security", "Meadowbrook Farms", "Orbit Telecom"]
PRODUCT = ["wireless headphones", "standing desk", "espresso machine", "trail running shoes", "project planner",
           "smart thermostat", "linen duvet cover", "travel backpack", "analytics dashboard", "cloud backup plan",
           "cast iron skillet", "noise-cancelling earbuds", "ergonomic chair", "yoga mat", "electric kettle",
           "winter parka", "language course", "meal kit subscription", "password manager", "photo book"]
FEATURE = ["dark mode", "offline sync", "two-factor sign-in", "shared calendars", "bulk export", "custom reports",
           "smart reminders", "a faster search", "team permissions", "automatic backups", "live chat support",
           "recurring invoices", "audit logs", "single sign-on", "scheduled sending"]
ISSUE = ["a delayed shipment", "a duplicate charge", "a login problem", "a missing attachment", "a broken link",
         "a failed payment", "an address change", "a damaged parcel", "a wrong size", "a refund request"]
EVENT = ["webinar", "product launch", "customer meetup", "quarterly review", "open house", "workshop",
         "onboarding session", "town hall", "roadmap briefing", "training day"]
CITY = ["Amsterdam", "Berlin", "Chicago", "Dublin", "Lisbon", "Madrid", "Melbourne", "Montreal", "Nairobi",
        "Oslo", "Seattle", "Singapore", "Toronto", "Vienna", "Warsaw"]
DAY = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTH = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
         "November", "December"]
TEAM = ["billing", "support", "sales", "design", "engineering", "marketing", "finance", "operations", "legal"]
ADJ = ["quick", "short", "friendly", "final", "gentle", "important", "small", "exciting", "overdue", "brief"]

SUBJECTS = [
    "{pct}% off all {product}s this weekend only - ends {day} at midnight",
    "Your order #{order} has shipped and arrives by {day}",
    "Re: {event} on {day} at {hour}:00 - agenda and dial-in details",
    "Fwd: notes from the {team} sync with {first} {last} last week",
    "{first}, your {product} is still waiting in your cart",
    "Invitation: {event} in {city} on {dd} {month} (seats are limited)",
    "Action needed: please update your payment details before {dd} {month}",
    "Welcome to {company}, {first}! Here is how to get started",
    "New at {company}: {feature} is finally here for every plan",
    "A {adj} reminder about your {product} subscription renewal",
    "Quick question about {issue} on order #{order}",
    "Your {month} statement from {company} is ready to view",
    "Last call: {event} registration closes this {day} at noon",
    "Re: Re: {team} budget for Q{q} - revised numbers attached",
    "{first} {last} shared the document \"{team} plan Q{q}\" with you",
    "We miss you, {first} - here is {pct}% off your next order",
    "Price drop on the {product} you looked at last week",
    "Thanks for your feedback on {feature}, {first}",
    "Security alert: a new sign-in to your account from {city}",
    "Automatic reply: out of office until {day} {dd} {month}",
    "[{company}] Weekly digest: {n} updates from the {team} team",
    "Can we move our {adj} call to {day} afternoon instead?",
    "Reminder: your {event} with {first} starts in one hour",
    "Your receipt from {company} - ${price} paid by card",
]

SENTENCES = [
    "Thanks for getting back to me so quickly about {issue}.",
    "I wanted to follow up on our conversation from last {day} about the {product}.",
    "Your order #{order} left our warehouse in {city} this morning and should arrive within {n} working days.",
    "As a member, you get {pct}% off every {product} until the end of {month}.",
    "We have just released {feature}, which many of you asked for in last year's survey.",
    "The {event} takes place on {day}, {dd} {month} at {hour}:00, and it is free for existing customers.",
    "Could you send me the updated figures before the {team} review on {day}?",
    "If this message reached you by mistake, simply ignore it and nothing will change on your account.",
    "Our {team} team has looked into {issue} and found that it was caused by a configuration error on our side.",
    "A refund of ${price} has been issued and should appear on your statement within {n} days.",
    "{first} from the {team} team will be your main contact from now on.",
    "Please note that the old dashboard will be switched off on {dd} {month}.",
    "The new {product} comes in {n} colours and ships free to {city} and the surrounding area.",
    "We would love to hear what you think, so reply to this email with any questions or ideas.",
    "I have attached the signed contract and the invoice for the first quarter.",
    "Let me know whether {day} or {day2} works better for a {adj} call.",
    "Customers who bought the {product} also liked our {product2}, now {pct}% cheaper.",
    "To keep your account secure, we recommend turning on {feature} in your settings.",
    "The venue in {city} has limited space, so please confirm your seat by {day}.",
    "{company} was named one of the best places to work in {city} this year.",
    "Your subscription renews automatically on {dd} {month} at the current price of ${price} per month.",
    "We are sorry for the inconvenience and have added a credit of ${price} to your account.",
    "Sales were up {pct}% compared with the same month last year, mostly thanks to the {product}.",
    "The agenda covers {feature}, pricing changes for next year and a short demo by {first} {last}.",
    "You can change your email preferences or unsubscribe at any time from your profile page.",
    "I am travelling to {city} next week but will check my inbox every evening.",
    "Several readers asked how we pick the books for our monthly list, so here is the story.",
    "Delivery drivers cannot leave parcels at the door in {city}, so choose a pickup point if you are out.",
    "Our engineers finished the migration overnight, and the service is running normally again.",
    "Bring a laptop if you want to follow along with the exercises during the {event}.",
    "The {team} budget for next quarter is still pending approval from {first}.",
    "Every purchase this month plants a tree with our partners in the Scottish Highlands.",
    "Your feedback helped us shorten the checkout from five steps to two.",
    "Tickets for the {event} are non-refundable but can be transferred to a colleague.",
    "We noticed a sign-in to your account from a new device in {city} on {day}.",
    "If you did not request this change, please contact our {team} team right away.",
    "Attached you will find the minutes, the action items and the draft timeline we discussed.",
    "Parking is available behind the building, and the nearest train station is a five-minute walk.",
    "The warranty on your {product} covers parts and labour for {n} years from the date of purchase.",
    "Our spring catalogue features {n} new designs inspired by the coastline near {city}.",
]

GREETINGS = ["Hi {first},", "Hello {first},", "Dear {first} {last},", "Good morning {first},", "Hey {first},",
             "Dear customer,", "Hi team,"]
SIGNOFFS = ["Best regards,\n{first2} {last2}\n{company}", "Thanks,\n{first2}", "Cheers,\n{first2} at {company}",
            "Kind regards,\nThe {company} team", "Warm wishes,\n{first2} {last2}, {team} lead"]


def fill(rng: random.Random, template: str) -> str:
    d1, d2 = rng.sample(DAY, 2)
    p1, p2 = rng.sample(PRODUCT, 2)
    return template.format(
        first=rng.choice(FIRST), last=rng.choice(LAST), first2=rng.choice(FIRST), last2=rng.choice(LAST),
        company=rng.choice(COMPANY), product=p1, product2=p2, feature=rng.choice(FEATURE),
        issue=rng.choice(ISSUE), event=rng.choice(EVENT), city=rng.choice(CITY), day=d1, day2=d2,
        month=rng.choice(MONTH), team=rng.choice(TEAM), adj=rng.choice(ADJ), pct=rng.choice([10, 15, 20, 25, 30, 40, 50]),
        order=rng.randrange(100000, 999999), hour=rng.randrange(8, 18), dd=rng.randrange(1, 29),
        q=rng.randrange(1, 5), n=rng.randrange(2, 8), price=f"{rng.randrange(5, 400)}.{rng.randrange(0, 100):02d}",
    )


def subject(rng: random.Random) -> str:
    return fill(rng, rng.choice(SUBJECTS))


def paragraph(rng: random.Random, count, limit: int) -> str:
    """Sentences (no repeats) appended while the text stays within limit."""
    out: list[str] = []
    for tmpl in rng.sample(SENTENCES, len(SENTENCES)):
        sent = fill(rng, tmpl)
        if count(" ".join(out + [sent])) > limit:
            break
        out.append(sent)
    return " ".join(out)


def body(rng: random.Random, count, limit: int) -> str:
    """Greeting, two or three paragraphs filling up to limit tokens, sign-off."""
    head = fill(rng, rng.choice(GREETINGS))
    tail = fill(rng, rng.choice(SIGNOFFS))
    budget = limit - count(head + "\n\n" + tail) + 2  # [CLS]/[SEP] counted once
    text = ""
    for tmpl in rng.sample(SENTENCES, len(SENTENCES)):
        sent = fill(rng, tmpl)
        # Start a new paragraph now and then, as real emails do.
        cand = text + ("\n\n" if rng.random() < 0.25 else " ") + sent if text else sent
        if count(cand) > budget:
            break
        text = cand
    return f"{head}\n\n{text}\n\n{tail}"


def main() -> None:
    model_dir = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("LIVESEG_MODEL_DIR", os.path.join(REPO, "models", "all-MiniLM-L6-v2"))
    )
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()  # count real lengths, so "<= 256" is checked, not enforced
    tok.no_padding()

    def count(text: str) -> int:
        return len(tok.encode(text).ids)

    rng = random.Random(SEED)
    makers = {
        "short": lambda: subject(rng),
        "medium": lambda: paragraph(rng, count, rng.randrange(66, WINDOWS["medium"][1] + 1)),
        "long": lambda: body(rng, count, MAX_TOKENS),
    }
    doc: dict = {"seed": SEED, "generator": "scripts/model/make_bench_texts.py", "tokens": {}, "tokens_range": {}}
    for bucket, make in makers.items():
        lo, hi = WINDOWS[bucket]
        texts: list[str] = []
        seen: set[str] = set()
        while len(texts) < PER_BUCKET:
            t = make()
            if t not in seen and lo <= count(t) <= hi:
                seen.add(t)
                texts.append(t)
        counts = [count(t) for t in texts]
        assert max(counts) <= MAX_TOKENS
        doc["tokens"][bucket] = round(statistics.mean(counts), 1)
        doc["tokens_range"][bucket] = [min(counts), max(counts)]
        doc[bucket] = texts

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    words = {w.lower().strip(".,!?:;") for b in makers for t in doc[b] for w in t.split()}
    print(f"wrote {OUT}")
    for b in makers:
        print(f"  {b:6s} {PER_BUCKET} texts, mean {doc['tokens'][b]} tokens, range {doc['tokens_range'][b]}")
    print(f"  {len(words)} distinct words overall")


if __name__ == "__main__":
    main()
