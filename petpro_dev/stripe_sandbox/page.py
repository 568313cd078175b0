"""The hosted checkout page (``GET /pay/{id}``) and its outcome pages: plain HTML, no scripts."""

from __future__ import annotations

from html import escape
from typing import Any

from petpro_dev.stripe_sandbox.engine import DECLINE_CARD, DEFAULT_CARD, format_amount

Obj = dict[str, Any]

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f6f8fa;color:#1a1f36}
main{max-width:440px;margin:48px auto;padding:32px;background:#fff;border-radius:12px;
     box-shadow:0 2px 12px rgba(26,31,54,.08)}
.badge{display:inline-block;font-size:12px;font-weight:600;letter-spacing:.04em;text-transform:uppercase;
       color:#a05c00;background:#fff4e0;border-radius:4px;padding:2px 8px}
h1{font-size:20px;margin:12px 0 4px}
.amount{font-size:32px;font-weight:700;margin:0 0 8px}
ul.items{list-style:none;padding:0;margin:0 0 24px;color:#4f566b}
ul.items li{display:flex;justify-content:space-between;border-bottom:1px solid #eef0f3;padding:6px 0}
label{display:block;font-size:14px;font-weight:600;margin:14px 0 4px}
input{width:100%;font:inherit;padding:10px 12px;border:1px solid #cfd7df;border-radius:6px}
.row{display:flex;gap:12px}.row>div{flex:1}
button{width:100%;margin-top:24px;padding:12px;font:inherit;font-weight:600;color:#fff;background:#635bff;
       border:0;border-radius:6px;cursor:pointer}
button:hover{background:#5249e0}
.hint{font-size:13px;color:#697386;margin-top:16px}
.error{color:#b42318;background:#fef3f2;border-radius:6px;padding:10px 12px;margin:16px 0 0}
.ok{color:#067647;font-size:20px;font-weight:700}
a{color:#635bff}
"""


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><span class=badge>Test mode · PetPro Stripe sandbox</span>{body}</main></body></html>"
    )


def _group(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def _item_label(line_item: Obj) -> str:
    qty = int(line_item["quantity"])
    return f"{line_item['description']} \u00d7 {qty}" if qty > 1 else str(line_item["description"])


def checkout_page(
    session: Obj, line_items: list[Obj], *, error: str | None = None, card_number: str = DEFAULT_CARD
) -> str:
    sid = escape(session["id"])
    currency = session["currency"]
    items = "".join(
        f"<li><span>{escape(_item_label(li))}</span>"
        f"<span>{escape(format_amount(li['amount_total'], currency))}</span></li>"
        for li in line_items
    )
    email = escape(session.get("customer_email") or "")
    cancel = session.get("cancel_url")
    cancel_link = f'<p class=hint><a href="{escape(cancel)}">Cancel and go back</a></p>' if cancel else ""
    error_html = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    body = f"""
<h1>Pay PetPro</h1>
<p class=amount>{escape(format_amount(session["amount_total"], currency))}</p>
<ul class=items>{items}</ul>
<form method=post action="/pay/{sid}">
  <label for=email>Email</label>
  <input id=email name=email type=email value="{email}" placeholder="you@example.com" required>
  <label for=card_number>Card number</label>
  <input id=card_number name=card_number inputmode=numeric autocomplete=cc-number
         value="{escape(_group(card_number))}" required>
  <div class=row>
    <div><label for=exp>Expiry</label><input id=exp name=exp value="12 / 34" autocomplete=cc-exp required></div>
    <div><label for=cvc>CVC</label><input id=cvc name=cvc value="123" inputmode=numeric autocomplete=cc-csc
         required></div>
  </div>
  <label for=name>Name on card</label>
  <input id=name name=name value="Test Owner" autocomplete=cc-name>
  {error_html}
  <button type=submit>Pay {escape(format_amount(session["amount_total"], currency))}</button>
</form>
<p class=hint>Test card {_group(DEFAULT_CARD)} pays; {_group(DECLINE_CARD)} is declined.
No real money moves.</p>
{cancel_link}
"""
    return _layout("Pay PetPro", body)


def success_url(session: Obj) -> str | None:
    url = session.get("success_url")
    return url.replace("{CHECKOUT_SESSION_ID}", session["id"]) if url else None


def paid_page(session: Obj) -> str:
    url = success_url(session)
    cont = f'<p><a href="{escape(url)}">Continue</a></p>' if url else ""
    body = f"""
<h1>Payment received</h1>
<p class=ok>{escape(format_amount(session["amount_total"], session["currency"]))} paid</p>
<p>Thank you. You can close this page.</p>
<p class=hint>Reference {escape(session["id"])}</p>
{cont}
"""
    return _layout("Payment received", body)


def closed_page(session: Obj | None, message: str) -> str:
    ref = f"<p class=hint>Reference {escape(session['id'])}</p>" if session else ""
    return _layout("Checkout unavailable", f"<h1>Checkout unavailable</h1><p>{escape(message)}</p>{ref}")
