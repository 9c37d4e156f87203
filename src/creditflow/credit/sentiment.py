"""A transparent sentiment scorer for news and opinion items about a business (Chinese and English).

The whole model is the two word lists below and one formula, so anyone can recompute a score by hand:

    hits_pos = positive terms found, hits_neg = negative terms found (a term preceded within 3 words or
               3 characters by a negator — not, no, never, 没有, 不, 未, 无 — counts for the other side)
    score    = (hits_pos - hits_neg) / (hits_pos + hits_neg + 1)        in (-1, 1); 0 when nothing matched

English is matched on lower-cased whole words; Chinese on substrings (no segmentation needed for these
terms). The lists favour terms that matter to a lender (default, lawsuit, arrears, expansion, award).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEXICON_VERSION = "lexicon-2026-11-v1"

POSITIVE_EN = frozenset(
    [
        "growth",
        "grows",
        "grew",
        "expand",
        "expands",
        "expanded",
        "expansion",
        "award",
        "awarded",
        "record",
        "profit",
        "profitable",
        "strong",
        "stable",
        "reliable",
        "praised",
        "partnership",
        "contract",
        "contracts",
        "hiring",
        "hires",
        "upgrade",
        "upgraded",
        "certified",
        "innovation",
        "recovered",
        "recovery",
        "exports",
        "exported",
        "best",
        "trusted",
    ]
)
NEGATIVE_EN = frozenset(
    [
        "default",
        "defaulted",
        "defaults",
        "lawsuit",
        "lawsuits",
        "sued",
        "fraud",
        "fine",
        "fined",
        "penalty",
        "penalised",
        "penalized",
        "arrears",
        "overdue",
        "unpaid",
        "layoffs",
        "layoff",
        "closure",
        "closed",
        "bankrupt",
        "bankruptcy",
        "insolvent",
        "complaint",
        "complaints",
        "recall",
        "recalled",
        "counterfeit",
        "fake",
        "protest",
        "strike",
        "delayed",
        "delays",
        "loss",
        "losses",
        "scandal",
        "investigation",
        "shutdown",
    ]
)
POSITIVE_ZH = (
    "增长",
    "扩张",
    "扩产",
    "获奖",
    "盈利",
    "稳定",
    "合作",
    "签约",
    "中标",
    "招聘",
    "升级",
    "认证",
    "创新",
    "好评",
    "出口",
    "回暖",
)
NEGATIVE_ZH = (
    "违约",
    "诉讼",
    "起诉",
    "欺诈",
    "罚款",
    "处罚",
    "拖欠",
    "欠薪",
    "逾期",
    "裁员",
    "停产",
    "倒闭",
    "破产",
    "投诉",
    "召回",
    "假货",
    "维权",
    "亏损",
    "调查",
    "失信",
    "被执行",
    "停工",
)
NEGATORS_EN = frozenset({"not", "no", "never", "without"})
NEGATORS_ZH = ("没有", "不", "未", "无")

_WORD = re.compile(r"[a-z]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True, slots=True)
class SentimentScore:
    score: float
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    lang: str


def detect_lang(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def _zh_negated(text: str, start: int) -> bool:
    window = text[max(0, start - 3) : start]
    return any(n in window for n in NEGATORS_ZH)


def score_text(text: str) -> SentimentScore:
    """Score one item; deterministic, no state."""
    pos: list[str] = []
    neg: list[str] = []
    lang = detect_lang(text)
    if lang == "zh":
        for term, own, other in [(t, pos, neg) for t in POSITIVE_ZH] + [(t, neg, pos) for t in NEGATIVE_ZH]:
            for match in re.finditer(re.escape(term), text):
                (other if _zh_negated(text, match.start()) else own).append(term)
    words = _WORD.findall(text.lower())
    for i, word in enumerate(words):
        if word in POSITIVE_EN or word in NEGATIVE_EN:
            negated = any(w in NEGATORS_EN for w in words[max(0, i - 3) : i])
            is_pos = word in POSITIVE_EN
            ((neg if negated else pos) if is_pos else (pos if negated else neg)).append(word)
    score = (len(pos) - len(neg)) / (len(pos) + len(neg) + 1)
    return SentimentScore(round(score, 6), tuple(pos), tuple(neg), lang)
