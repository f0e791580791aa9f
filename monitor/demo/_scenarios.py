"""The demo app's world: users, help-centre articles, orders, prompts and what each kind of turn says.

Data only (plus one pure chooser), kept out of ``workload.py`` so the app code there stays readable.
The rota fixes *which kind* of turn comes when, so a run of ``len(ROTA)`` turns already contains every
special case a dashboard panel or analyzer needs; the seeded RNG picks everything else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class User:
    user_id: str
    email: str
    locale: str  # "en" | "ja"
    plan: str  # "free" | "pro" | "enterprise"


USERS: tuple[User, ...] = (
    User("u-alice", "alice@example.com", "en", "pro"),
    User("u-bob", "bob.martin@example.org", "en", "free"),
    User("u-carol", "carol@acme-corp.example", "en", "enterprise"),
    User("u-dmitri", "dmitri.k@example.net", "en", "free"),
    User("u-sofia", "sofia.rossi@example.it", "en", "pro"),
    User("u-omar", "omar@example.com", "en", "enterprise"),
    User("u-haruto", "haruto.sato@example.jp", "ja", "pro"),
    User("u-yui", "yui.tanaka@example.jp", "ja", "free"),
)

DOCS: tuple[dict[str, str], ...] = (
    {
        "id": "kb-101",
        "title": "Resetting your password",
        "text": "Use 'Forgot password' on the sign-in page; the link is valid for 30 minutes.",
    },
    {
        "id": "kb-102",
        "title": "Billing and invoices",
        "text": "Invoices are issued on the 1st of each month and can include a VAT number.",
    },
    {
        "id": "kb-103",
        "title": "Shipping times",
        "text": "Orders ship within 2 business days; tracking links are e-mailed on dispatch.",
    },
    {
        "id": "kb-104",
        "title": "Refunds",
        "text": "Refunds reach the original payment method 5-7 business days after we receive the return.",
    },
    {
        "id": "kb-105",
        "title": "Plans",
        "text": "Free: 3 projects. Pro: unlimited projects. Enterprise adds SSO and a 99.9% SLA.",
    },
    {
        "id": "kb-106",
        "title": "Security and privacy",
        "text": "Data is encrypted at rest and in transit; exports are available from the Privacy page.",
    },
    {
        "id": "kb-107",
        "title": "API limits",
        "text": "The public API allows 600 requests per minute per workspace.",
    },
    {
        "id": "kb-108",
        "title": "Team members",
        "text": "Workspace owners invite teammates from Settings > Members.",
    },
)

ORDERS: dict[str, dict[str, Any]] = {
    "A-1042": {"order_id": "A-1042", "status": "shipped", "carrier": "DHL", "eta": "2 days"},
    "B-2230": {"order_id": "B-2230", "status": "processing", "carrier": None, "eta": "4 days"},
    "C-3318": {
        "order_id": "C-3318",
        "status": "delivered",
        "carrier": "UPS",
        "note": "customer reported damage",
    },
    "D-4471": {"order_id": "D-4471", "status": "refunded", "amount_usd": 49.0},
}

SYSTEM_PROMPTS: dict[str, str] = {
    "v1": (
        "You are the support assistant of Acme Cloud. Answer in {language} using only these help-centre "
        "articles:\n{docs}\nOrder on file: {order}\nKeep answers short."
    ),
    "v2": (
        "You are Acme Cloud's senior support specialist. Be warm and precise, answer in {language}, cite the "
        "article you used and offer to escalate to a human when unsure.\nHelp-centre articles:\n{docs}\n"
        "Customer's order: {order}"
    ),
}
FOLLOWUP_PROMPT = "Suggest one short follow-up question the customer might ask after this answer."
AGENT_PROMPT = "You are Acme Cloud's order assistant. Use the tools to look orders up before answering."
TRIAGE_PROMPT = (
    "Classify the support ticket. Reply with a JSON object with the fields answer, topic and confidence."
)
TITLE_PROMPT = "Write a five-word title for this support conversation."
SUMMARY_PROMPT = "Summarise this support conversation in one sentence for the next agent."
BUSY_MESSAGE = "We're getting a lot of questions right now. Please try again in a minute."

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order's status by its id, e.g. A-1042.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "The order id."}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "escalate_to_human",
            "description": "Hand the conversation to a human agent.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
            },
        },
    },
]

QUESTIONS_EN = (
    "How do I reset my password?",
    "Where is my order A-1042? It was supposed to arrive yesterday.",
    "Can I upgrade from the Free plan to Pro in the middle of the month?",
    "How long does a refund take after I return an item?",
    "Is my data encrypted at rest?",
    "Why was I charged twice on my last invoice?",
    "How do I export all my projects as CSV?",
    "What is the rate limit of the public API?",
    "Can I change the shipping address for order B-2230?",
    "How do I add a teammate to my workspace?",
    "Does the Enterprise plan include SSO?",
    "My order C-3318 arrived damaged, what should I do?",
    "How do I delete my account permanently?",
    "The dashboard is very slow today, is there an outage?",
    "Can I get an invoice with my company VAT number?",
)
QUESTIONS_JA = (
    "パスワードをリセットする方法を教えてください。",
    "注文 A-1042 の配送状況を確認したいです。",
    "請求書の宛名を会社名に変更できますか？",
    "エンタープライズプランにはSSOが含まれていますか？",
    "返品してから返金までどのくらいかかりますか？",
)
ORDER_QUESTIONS_EN = (
    "Where is my order A-1042?",
    "What's the status of order B-2230?",
    "Order C-3318 arrived broken. Can you check it?",
    "Has the refund for D-4471 gone through?",
)
ORDER_QUESTIONS_JA = ("注文 A-1042 はいつ届きますか？", "注文 D-4471 の返金状況を教えてください。")

TOXIC_INPUTS = (
    "This is the most useless app I have ever used. Are you people idiots? Where is my refund?",
    "Your support is garbage and you are all morons. Fix my account now.",
)
TOXIC_OUTPUTS = (
    "You are an idiot and this is a stupid question. Read the manual yourself.",
    "Honestly, only a moron would ask that. Figure it out yourself.",
)
PII_QUESTIONS = {
    "pii_email": "Please send the invoice to john.doe@example.com and cc finance@acme-corp.example.",
    "pii_phone": "My phone number changed to 090-1234-5678 (office: +1 415-555-0132), please update my contact details.",
    "pii_card": "My card 4111 1111 1111 1111 (exp 12/28) was declined, can you charge it again?",
    "ja_pii": "連絡先のメールアドレスを hanako.yamada@example.jp に、電話番号を 090-1234-5678 に変更してください。",
}
REFUSAL_QUESTION = "How can I get into my ex-partner's account without their password?"
REFUSAL = "I'm sorry, but as an AI language model I cannot help with that."
REFUSAL_QUESTION_JA = "他の人のアカウントにパスワードなしでログインする方法を教えてください。"
REFUSAL_JA = "申し訳ありませんが、そのご要望にはお応えできません。"

#: The kind of each turn, cycled. 36 turns: 21 ordinary, 15 special.
ROTA: tuple[str, ...] = (
    "answer", "tools", "answer", "stream", "pii_email", "answer", "toxic_input", "json", "answer", "refusal",
    "stream", "rate_limited", "answer", "ja_question", "tools_4o", "toxic_output", "answer", "async_summary",
    "pii_phone", "answer", "slow", "answer", "server_error", "ja_refusal", "stream", "answer", "pii_card",
    "tools", "answer", "ja_pii", "answer", "stream", "toxic_output", "answer", "json", "answer",
)  # fmt: skip
#: Kinds whose text is English whatever the user's locale.
ENGLISH_ONLY = frozenset({"toxic_input", "toxic_output", "pii_email", "pii_phone", "pii_card", "refusal"})
#: Kinds that end with an answer a user can rate.
ANSWERED = frozenset(ROTA) - {"json", "async_summary", "rate_limited", "server_error"}
#: Kinds whose answer users dislike (forced bad outputs).
DISLIKED = frozenset({"toxic_output", "refusal", "ja_refusal"})


def question_for(kind: str, user: User, rng: random.Random) -> tuple[str, str]:
    """(question text, out-of-band markers) for a turn of ``kind`` by ``user``."""
    ja = user.locale == "ja"
    normal = rng.choice(QUESTIONS_JA if ja else QUESTIONS_EN)
    if kind in ("tools", "tools_4o"):
        return rng.choice(ORDER_QUESTIONS_JA if ja else ORDER_QUESTIONS_EN), ""
    if kind == "toxic_input":
        return rng.choice(TOXIC_INPUTS), ""
    if kind == "toxic_output":
        return rng.choice(QUESTIONS_EN), f"[[reply:{rng.choice(TOXIC_OUTPUTS)}]]"
    if kind in PII_QUESTIONS:
        return PII_QUESTIONS[kind], ""
    if kind == "refusal":
        return REFUSAL_QUESTION, f"[[reply:{REFUSAL}]]"
    if kind == "ja_refusal":
        return REFUSAL_QUESTION_JA, f"[[reply:{REFUSAL_JA}]]"
    if kind == "rate_limited":
        return normal, "[[error:429]]"
    if kind == "server_error":
        return normal, "[[error:500]]"
    return normal, ""
