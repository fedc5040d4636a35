"""Measure the FAQ answerer on the labelled questions of tests/test_answerer.py.

Compares the scoring it uses (cosine to phrasings and answer + distinctive-word bonus) with
plain cosine similarity to the phrasings, at the configured threshold, and prints both.
Run: .venv/bin/python scripts/faq_eval.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.accounts import FAQ, load_accounts
from agent.engines.embedder import load_embedder
from agent.engines.faq_llm import FaqIndex
from agent.settings import get_settings
from tests.test_answerer import OFF_TOPIC, PARAPHRASES

# Harder cases, reported but not asserted by the tests.
HARD: dict[str, list[tuple[str | None, str]]] = {
    "harbor-dental": [("insurance", "do you work with cigna")],
    "bluebird-bikes": [(None, "can you deliver a bike to my house")],
}


def main() -> None:
    settings = get_settings()
    registry = load_accounts(settings.accounts_dir, settings.default_account)
    embedder = load_embedder(None, verify=True)
    methods: dict[str, Callable[[list[FAQ]], FaqIndex]] = {
        "cosine to phrasings only": lambda faqs: FaqIndex(
            embedder, faqs, match_answers=False, word_bonus=0.0
        ),
        "firstword (phrasings + answer + word bonus)": lambda faqs: FaqIndex(embedder, faqs),
    }
    for name, build_index in methods.items():
        right = wrong_faq = under = handed_off = answered_off_topic = 0
        hard: list[str] = []
        elapsed: list[float] = []
        for account_id, account in registry.accounts.items():
            index = build_index(list(account.faqs))
            cases: list[tuple[str | None, str]] = list(PARAPHRASES.get(account_id, []))
            cases += [(None, q) for q in OFF_TOPIC.get(account_id, [])]
            for want, question in cases + HARD.get(account_id, []):
                start = time.perf_counter()
                match = index.best(question)
                elapsed.append(time.perf_counter() - start)
                answered = match.score >= settings.faq_min_score
                got = match.faq.id if (match.faq and answered) else None
                if (want, question) in HARD.get(account_id, []):
                    hard.append(f"{question!r} -> {got or 'handoff'} ({match.score:.2f})")
                elif want is None:
                    handed_off += got is None
                    answered_off_topic += got is not None
                elif got == want:
                    right += 1
                elif got is None:
                    under += 1
                else:
                    wrong_faq += 1
        print(f"{name}:")
        print(f"  paraphrases: {right} right, {wrong_faq} wrong FAQ, {under} handed off")
        print(f"  off-topic:   {handed_off} handed off, {answered_off_topic} answered")
        print(f"  hard cases:  {'; '.join(hard)}")
        print(f"  median time per question: {sorted(elapsed)[len(elapsed) // 2] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
