"""Offline sentiment of customer messages, French and English (see ``scorer``)."""

from pipeline.sentiment.scorer import NEGATIVE_AT, POSITIVE_AT, Sentiment, detect_lang, lang_of_locale, score

__all__ = ["NEGATIVE_AT", "POSITIVE_AT", "Sentiment", "detect_lang", "lang_of_locale", "score"]
