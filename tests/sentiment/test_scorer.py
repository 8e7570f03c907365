"""The scorer's rules, one behaviour per test; expected labels by hand."""

from __future__ import annotations

import pytest

from pipeline.sentiment import detect_lang, lang_of_locale, score


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("colis jamais reçu, c'est inadmissible", "fr"),
        ("still no refund after 3 weeks", "en"),
        ("Toujours pas remboursé après trois semaines, c'est du vol.", "fr"),
        ("My parcel never arrived and nobody answers. This is unacceptable.", "en"),
    ],
)
def test_clear_negatives_score_negative(text: str, lang: str) -> None:
    assert score(text, lang).label == "negative"
    assert score(text).label == "negative"  # and with the language detected


def test_accents_do_not_matter() -> None:
    folded = score("colis jamais recu, c'est inadmissible", "fr")
    assert folded == score("colis jamais reçu, c’est inadmissible", "fr")


def test_negated_service_word_is_a_complaint_and_plain_one_is_neutral() -> None:
    assert score("I have received my parcel", "en").label == "neutral"
    assert score("Still not received, no answer from you", "en").label == "negative"


def test_negation_flips_a_positive_word() -> None:
    assert score("Je suis satisfaite", "fr").label == "positive"
    assert score("Je ne suis pas satisfaite", "fr").label == "negative"


def test_negation_stops_at_the_end_of_the_clause() -> None:
    # "pas" negates "connais"; "furieux" is in the next clause and stays negative.
    assert score("Livré chez un voisin que je ne connais pas, je suis furieux.", "fr").label == "negative"


def test_french_idioms_are_scored_as_phrases() -> None:
    assert score("Ce n'est pas terrible", "fr").label == "negative"
    assert score("Pas mal du tout, merci", "fr").label == "positive"
    assert score("Ras le bol", "fr").label == "negative"


def test_intensifier_strengthens_and_downtoner_weakens() -> None:
    plain = score("disappointed", "en").score
    assert score("really disappointed", "en").score < plain < score("a bit disappointed", "en").score


def test_clause_after_but_weighs_more() -> None:
    assert score("Delivery was late but the support was excellent and helpful", "en").label == "positive"
    assert score("The support was nice but the parcel is broken and it's unacceptable", "en").label == "negative"


def test_emoji_counts() -> None:
    assert score("Order 123 \U0001f621", "en").label == "negative"
    assert score("Reçu \U0001f44d", "fr").label == "positive"


def test_empty_and_unrelated_text_is_neutral() -> None:
    assert score("", "fr").label == "neutral"
    assert score("Commande 48213", "fr").score == 0.0


def test_score_is_bounded_and_deterministic() -> None:
    text = "TERRIBLE!!! worst, awful, horrible, unacceptable, disgusting service!!!"
    first = score(text, "en")
    assert -1.0 <= first.score <= -0.9
    assert score(text, "en") == first


def test_language_of_locale_and_of_text() -> None:
    assert lang_of_locale("fr-FR") == "fr" and lang_of_locale("en_GB") == "en"
    assert lang_of_locale("de-DE") is None and lang_of_locale(None) is None
    assert detect_lang("Bonjour, où en est ma commande ?") == "fr"
    assert detect_lang("Hi, where is my order?") == "en"


def test_text_clearly_in_the_other_language_overrides_the_locale_hint() -> None:
    assert detect_lang("Still no refund after 3 weeks, this is ridiculous", "fr") == "en"
    assert detect_lang("Merci", "en") == "en"  # too little text to overrule the hint
    assert score("Still no refund after 3 weeks", "fr").label == "negative"
