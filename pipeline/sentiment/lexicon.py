"""The French and English customer-service lexicon used by ``pipeline.sentiment.scorer``.

Written for this project (no third-party word list): the words customers
and agents use about orders, deliveries, refunds, sizes, payments and
service, weighted from -3 (strongly negative) to +3 (strongly positive).
Keys are accent-folded and lower case (``recu``, ``decue``), because the
scorer folds the text the same way; French elisions are split by the
tokenizer (``c'est`` -> ``c est``, ``j'en ai marre`` -> ``j en ai marre``).

- ``LEXICON``: single words and their weight.
- ``PHRASES``: two to four words scored together, before their words: idioms
  whose meaning is not the sum of their words (``pas terrible`` is negative,
  ``pas mal`` positive, ``fed up``, ``waste of time``).
- ``NEGATING_PHRASES``: phrases that negate what follows and are negative
  themselves (``still no``, ``toujours pas``).
- ``NEGATORS``: words that flip the next three tokens.
- ``SERVICE_WORDS``: neutral alone, a clear complaint when negated
  (``received``, ``refund``, ``answer``; ``recu``, ``rembourse``, ``reponse``).
- ``INTENSIFIERS``: multipliers of the next sentiment word (>1 boosts, <1 damps).
- ``BUT``: contrast words; what follows weighs more than what precedes.
- ``EMOJI``: emoji and emoticons turned into tokens before folding.

To change a weight, add a message that shows why to the labeled sets in
``tests/sentiment/data`` and check the measured accuracy does not drop.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = [
    "BUT",
    "EMOJI",
    "FUNCTION_WORDS",
    "INTENSIFIERS",
    "LEXICON",
    "NEGATING_PHRASES",
    "NEGATORS",
    "PHRASES",
    "SERVICE_WORDS",
]

EMOJI: Mapping[str, str] = MappingProxyType(
    {
        "\U0001f621": "emo_angry",  # pouting face
        "\U0001f620": "emo_angry",
        "\U0001f92c": "emo_angry",
        "\U0001f624": "emo_angry",
        "\U0001f61e": "emo_sad",
        "\U0001f622": "emo_sad",
        "\U0001f62d": "emo_sad",
        "\U0001f641": "emo_sad",
        "\u2639": "emo_sad",
        "\U0001f612": "emo_sad",
        "\U0001f644": "emo_sad",  # eye roll
        "\U0001f44e": "emo_sad",
        "\U0001f44d": "emo_happy",
        "\U0001f64f": "emo_happy",
        "\U0001f60a": "emo_happy",
        "\U0001f642": "emo_happy",
        "\U0001f600": "emo_happy",
        "\U0001f603": "emo_happy",
        "\U0001f60d": "emo_love",
        "\u2764": "emo_love",
        "\U0001f970": "emo_love",
        ":-)": "emo_happy",
        ":)": "emo_happy",
        ":D": "emo_happy",
        ":-(": "emo_sad",
        ":(": "emo_sad",
    }
)

_SHARED = {"emo_angry": -2.5, "emo_sad": -2.0, "emo_happy": 1.5, "emo_love": 2.5}

_EN = {
    # negative
    "unacceptable": -3, "ridiculous": -2.5, "terrible": -3, "awful": -3, "horrible": -3, "appalling": -3,
    "disgusting": -3, "disgraceful": -3, "disgrace": -3, "worst": -3, "bad": -2, "poor": -2, "poorly": -2,
    "disappointed": -2.5, "disappointing": -2.5, "disappointment": -2.5, "angry": -2.5, "furious": -3,
    "livid": -3, "upset": -2, "annoyed": -2, "annoying": -2, "frustrated": -2.5, "frustrating": -2.5,
    "useless": -2.5, "rude": -2.5, "scam": -3, "fraud": -3, "stolen": -2, "lies": -2.5, "lied": -2.5,
    "lying": -2.5, "joke": -2, "shameful": -3, "pathetic": -3, "incompetent": -3, "incompetence": -3,
    "nightmare": -3, "broken": -1.5, "damaged": -1.5, "smashed": -2, "shattered": -2, "cracked": -1,
    "torn": -1.5, "ripped": -1.5, "missing": -1.5, "wrong": -1.5, "late": -1.5, "delayed": -1.5,
    "delay": -1, "delays": -1, "overcharged": -2.5, "ignored": -2.5, "ignoring": -2.5, "unhelpful": -2.5,
    "lost": -1.5, "problem": -1, "problems": -1, "issue": -0.8, "issues": -0.8, "complaint": -1.5,
    "complain": -1.5, "refused": -1.5, "declined": -1, "failed": -1.2, "fails": -1.2, "error": -1,
    "mess": -2, "hate": -3, "hated": -3, "sick": -1.5, "tired": -1.5, "unbelievable": -2,
    "chargeback": -2, "lawyer": -2, "cheap": -1, "flimsy": -1.5, "faulty": -2, "defective": -2,
    "ruined": -2.5, "stain": -1, "stained": -1.5, "unusable": -2.5, "misleading": -2, "confusing": -1.5,
    "slow": -1.5, "worse": -2, "sad": -1.5, "unhappy": -2.5, "dissatisfied": -2.5, "wtf": -2.5,
    "disaster": -3, "shocking": -2.5, "shocked": -2, "atrocious": -3, "dreadful": -3, "outrageous": -3,
    "inexcusable": -3, "seriously": -1, "ridiculously": -1.5, "unprofessional": -3, "sloppy": -2,
    "fed": -1, "disgusted": -3, "zero": -1, "waiting": -0.5, "charged": -0.8, "twice": -0.5,
    "excuses": -1.5, "excuse": -1, "nobody": -1.5, "again": -0.5, "mistake": -1.2, "fault": -1,
    "scratched": -1.5, "dented": -1.5, "leaking": -1.5, "shrank": -1.5, "falling": -1, "stuck": -1.5,
    "impossible": -1.5, "hopeless": -2.5, "unreliable": -2.5, "appalled": -3, "gutted": -2.5,
    "rubbish": -2.5, "crap": -2.5, "garbage": -2.5, "trash": -2, "shame": -2, "regret": -2,
    "worried": -1, "concerned": -0.8, "robbery": -3, "theft": -3, "stealing": -3, "cheated": -3,
    "insult": -2.5, "insulting": -2.5, "disrespectful": -2.5, "unreachable": -2.5, "soaked": -1.5,
    "abandoned": -2, "conned": -3, "letdown": -2.5, "unbearable": -3, "stinks": -2, "hassle": -2,
    # positive
    "thanks": 1.5, "thank": 1.5, "thx": 1.2, "great": 2.5, "excellent": 3, "perfect": 3, "perfectly": 2.5,
    "love": 2.5, "loved": 2.5, "loving": 2.5, "lovely": 2.5, "amazing": 3, "awesome": 3, "fantastic": 3,
    "wonderful": 3, "brilliant": 3, "good": 1.8, "nice": 1.8, "happy": 2, "pleased": 2, "glad": 2,
    "helpful": 2.5, "quick": 1.2, "quickly": 1, "fast": 1.2, "speedy": 1.5, "efficient": 2,
    "appreciate": 2, "appreciated": 2, "satisfied": 2, "superb": 3, "cheers": 1, "recommend": 2,
    "beautiful": 2.5, "gorgeous": 2.5, "kind": 2, "kindly": 0.5, "friendly": 2, "easy": 1.5, "smooth": 1.5,
    "resolved": 1, "sorted": 1.5, "fine": 1, "ok": 0.5, "okay": 0.5, "best": 2.5, "delighted": 3,
    "impressed": 2.5, "star": 1, "legend": 2, "lifesaver": 2.5, "sweet": 1.5, "cool": 1.5, "fab": 2.5,
    "fabulous": 3, "grateful": 2.5, "patient": 1.5, "patience": 1, "professional": 2, "comfortable": 1.5,
    "fits": 1, "solved": 1.5, "fixed": 1, "prompt": 1.5, "promptly": 1.5, "wow": 2, "pleasure": 2,
    "outstanding": 3, "exceptional": 3, "reassuring": 1.5, "smoothly": 1.5, "soft": 1, "cute": 1.5,
    "works": 0.5, "worked": 0.8, "well": 0.5, "enjoy": 2, "enjoyed": 2, "favourite": 2, "favorite": 2,
    "nicer": 2, "stunning": 3, "flawless": 3, "thrilled": 3,
}

_FR = {
    # negative
    "inadmissible": -3, "inacceptable": -3, "scandaleux": -3, "scandaleuse": -3, "scandale": -3,
    "honteux": -3, "honteuse": -3, "honte": -2.5, "nul": -2.5, "nulle": -2.5, "nuls": -2.5,
    "lamentable": -3, "deplorable": -3, "catastrophique": -3, "catastrophe": -3, "horrible": -3,
    "affreux": -3, "affreuse": -3, "degoute": -2.5, "degoutee": -2.5, "decu": -2.5, "decue": -2.5,
    "decus": -2.5, "decues": -2.5, "decevant": -2.5, "decevante": -2.5, "deception": -2.5,
    "mecontent": -2.5, "mecontente": -2.5, "mecontents": -2.5, "furieux": -3, "furieuse": -3,
    "enerve": -2, "enervee": -2, "agace": -2, "agacee": -2, "marre": -2.5, "vol": -2.5, "arnaque": -3,
    "arnaqueurs": -3, "escroquerie": -3, "escrocs": -3, "voleurs": -3, "inexistant": -2.5,
    "inexistante": -2.5, "incompetent": -3, "incompetente": -3, "incompetents": -3, "incompetence": -3,
    "retard": -1.5, "retarde": -1.5, "retardee": -1.5, "casse": -2, "cassee": -2, "casses": -2,
    "abime": -2, "abimee": -2, "abimes": -2, "endommage": -2, "endommagee": -2, "defectueux": -2,
    "defectueuse": -2, "fele": -1, "felure": -1, "fissure": -1, "tache": -1, "tachee": -1.5,
    "manquant": -1.5, "manquante": -1.5, "manque": -1, "erreur": -1.2, "faux": -1.5, "fausse": -1.5,
    "probleme": -1, "problemes": -1, "souci": -1, "soucis": -1, "plainte": -2, "reclamation": -1,
    "pire": -3, "mauvais": -2, "mauvaise": -2, "mal": -1.5, "triste": -1.5, "inquiet": -1,
    "inquiete": -1, "lent": -1.5, "lente": -1.5, "lenteur": -1.5, "perdu": -1.5, "perdue": -1.5,
    "ignore": -2, "ignoree": -2, "mepris": -2.5, "insupportable": -3, "intolerable": -3, "absurde": -2,
    "ridicule": -2.5, "galere": -2, "bloque": -1.5, "bloquee": -1.5, "refuse": -1.5, "debite": -1,
    "injoignable": -2.5, "injoignables": -2.5, "impossible": -1.5, "desagreable": -2, "desagrement": -1.5,
    "penible": -2, "fache": -2.5, "fachee": -2.5, "colere": -2.5, "hallucinant": -2, "dommage": -1.5,
    "regrette": -1.5, "terrible": -2, "minable": -3, "pitoyable": -3, "abuse": -2,
    "foutent": -2.5, "moque": -2, "moquez": -2.5, "lamentablement": -3, "honteusement": -3,
    "attente": -0.5, "encore": -0.5, "rage": -2.5, "relance": -1, "relances": -1.5,
    "escroc": -3, "poubelle": -2.5, "dechire": -1.5, "dechiree": -1.5, "raye": -1.5,
    "rayure": -1.5, "sale": -1.5, "use": -0.5, "trompe": -2, "trompee": -2, "mensonge": -2.5,
    "mensonges": -2.5, "menti": -2.5, "excuse": -0.5, "grave": -1, "rate": -1.5, "ratee": -1.5,
    "epuise": -1.5, "epuisee": -1.5, "douteux": -1.5, "douteuse": -1.5, "louche": -1.5,
    "cher": -0.8, "chere": -0.8, "arnaquer": -3, "vole": -2.5, "volee": -2.5,
    "echec": -1.5, "echoue": -1.5, "annule": -0.8, "annulee": -0.8, "derange": -1, "derangee": -1,
    "inquietude": -1.5, "stress": -1.5, "stresse": -1.5, "stressee": -1.5, "choque": -2.5, "choquee": -2.5,
    "insulte": -2.5, "blague": -2, "mentir": -2.5, "mentez": -2.5, "trempe": -1.5, "eventre": -2,
    "abandonnee": -2, "abandonne": -2, "irrespectueux": -2.5, "scandalise": -3, "scandalisee": -3,
    # positive
    "merci": 1.5, "parfait": 3, "parfaite": 3, "parfaitement": 2.5, "super": 2, "genial": 3, "geniale": 3,
    "excellent": 3, "excellente": 3, "top": 2, "bravo": 2.5, "formidable": 3, "rapide": 1.2,
    "rapides": 1.2, "rapidement": 1, "rapidite": 1.5, "efficace": 2, "efficaces": 2, "efficacite": 2,
    "content": 2, "contente": 2, "contents": 2, "satisfait": 2, "satisfaite": 2, "satisfaits": 2,
    "ravi": 3, "ravie": 3, "ravis": 3, "bien": 1, "bon": 1.2, "bonne": 1.2, "agreable": 2, "aimable": 2,
    "sympa": 2, "gentil": 1.5, "gentille": 1.5, "adorable": 2.5, "magnifique": 3, "superbe": 3,
    "beau": 2, "belle": 2, "jolie": 1.5, "joli": 1.5, "impeccable": 3, "nickel": 2.5, "reactif": 2.5,
    "reactive": 2.5, "reactivite": 2.5, "professionnel": 2, "professionnelle": 2, "recommande": 2,
    "adore": 2.5, "aime": 2, "plaisir": 2, "chouette": 2, "cool": 1.5, "heureux": 2, "heureuse": 2,
    "soulage": 1.5, "soulagee": 1.5, "rassure": 1.5, "rassuree": 1.5, "resolu": 1, "regle": 1,
    "fluide": 1.5, "facile": 1.2, "qualite": 1, "confortable": 1.5, "conforme": 1.2, "bienveillant": 2,
    "patience": 1, "patient": 1.5, "ecoute": 1, "merveilleux": 3,
    "merveille": 3, "extra": 2, "fidele": 1.5, "remercie": 2, "remercier": 2, "felicitations": 2.5,
    "douce": 1, "doux": 1, "pratique": 1, "solide": 1, "impecable": 3, "courtois": 2, "courtoise": 2,
    "serieux": 1, "serieuse": 1, "mieux": 1, "ok": 0.5, "daccord": 0.3, "volontiers": 1,
    "beaux": 2, "belles": 2, "sublime": 3, "conquise": 2, "conquis": 2,
}

LEXICON: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"en": MappingProxyType({**_SHARED, **_EN}), "fr": MappingProxyType({**_SHARED, **_FR})}
)

PHRASES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "en": MappingProxyType(
            {
                "fed up": -2.5, "waste of time": -3, "waste of money": -3, "never again": -3,
                "never order again": -3, "never ordering again": -3, "rip off": -3, "ripped off": -3,
                "still waiting": -2, "no problem": 1, "no worries": 1, "not bad": 0.8,
                "third time": -1.5, "second time": -1, "how hard": -2, "what a joke": -3,
                "money back": -2, "my money": -2, "no reply": -2, "no answer": -2, "kind of": 0,
                "what kind of": -1, "no response": -2,
                "never order": -2.5, "never buy": -2.5, "never buying": -2.5, "never shop": -2.5, "sick of": -2.5,
                "tired of": -2,
                "last time": -1.5, "spot on": 2.5, "over the moon": 3, "well done": 2.5,
                "thank you": 1.5, "many thanks": 2, "much appreciated": 2.5, "trading standards": -2.5,
                "charged twice": -2.5, "been charged": -1, "you promised": -2, "make a complaint": -2.5,
                "on hold": -1, "let down": -2.5, "no one": -1.5, "not happy": -2.5,
                "no longer": -0.5, "as described": 1, "as expected": 1, "in touch": 0, "sort it": -0.5,
                "fall apart": -2, "fell apart": -2, "came apart": -2, "not fit": -1, "not worth": -2.5,
                "small crack": -1, "give up": -2, "good morning": 0, "good afternoon": 0,
                "good evening": 0, "no rush": 0.8, "keep up": 1, "happy with": 2.5, "top notch": 3,
                "made my day": 3, "above and beyond": 3, "no idea": -0.8,
                "not what i ordered": -2.5, "brick wall": -2.5, "talking to a wall": -2.5, "hung up": -2.5,
                "without a hitch": 2, "in pieces": -2, "not care": -2,
            }
        ),
        "fr": MappingProxyType(
            {
                "pas terrible": -2, "pas mal": 1.5, "pas de souci": 1, "pas de soucis": 1,
                "pas de probleme": 1, "sans souci": 1, "sans probleme": 1, "ras le bol": -3,
                "en ai marre": -2.5, "foutage de gueule": -3, "foutent de": -3, "fout de": -3,
                "n importe quoi": -2.5, "plus jamais": -3, "derniere fois": -1.5, "c est du vol": -3,
                "j attends toujours": -2, "attends toujours": -2, "troisieme fois": -1.5,
                "deuxieme fois": -1, "service client": 0, "mon argent": -2, "sans reponse": -2,
                "pas de reponse": -2, "pour rien": -2, "commanderai plus": -2.5,
                "mes sous": -1, "prendre les gens": -2, "pour des idiots": -2.5, "avis negatif": -2.5,
                "rien a voir": -1.5, "bon courage": 0, "bonne journee": 0.5, "bonne soiree": 0.5,
                "bonne continuation": 1, "au top": 2.5, "un plaisir": 2, "du tout": 0,
                "bien recu": 1, "bien arrive": 1.5, "bien arrivee": 1.5, "tres bien": 2,
                "de qualite": 1.5, "a la hauteur": 1.5, "pas a la hauteur": -2.5, "pris en charge": 0.5,
                "en charge": 0, "peu importe": 0, "pas content": -2.5, "pas contente": -2.5,
                "mis en demeure": -2.5, "60 millions": -2, "signal conso": -2.5, "que dalle": -2.5,
                "aucun sens": -2, "se moquer": -2, "vous moquez": -2.5, "comme prevu": 1,
                "comme decrit": 1, "bien emballe": 1.5, "mal emballe": -2, "double debit": -2.5,
                "debite deux fois": -2.5, "debitee deux fois": -2.5, "au final": 0,
                "merci de": 0, "bon de": 0, "bon d achat": 0.5, "sert a rien": -2.5, "parler a un mur": -2.5,
                "pas ce que j ai commande": -2.5, "pas ce que j avais commande": -2.5,
                "raccroche au nez": -2.5, "manque de respect": -2.5, "en morceaux": -2,
            }
        ),
    }
)

NEGATING_PHRASES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "en": MappingProxyType({"still no": -1, "still not": -1, "still nothing": -2, "yet again": -1.5}),
        "fr": MappingProxyType(
            {
                "personne ne": -1.5, "personne n": -1.5, "toujours pas": -1, "toujours rien": -2,
                "toujours aucun": -1, "toujours aucune": -1,
                "toujours aucune nouvelle": -2.5, "encore une fois": -1.5, "jamais recu": -2.5,
            }
        ),
    }
)

# Word -> its own weight (most negators are neutral alone).
NEGATORS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "en": MappingProxyType(
            {"not": 0, "no": 0, "never": -0.5, "nothing": -0.5, "none": 0, "without": 0, "neither": 0, "nor": 0,
             "cannot": 0, "nowhere": -0.5}
        ),
        "fr": MappingProxyType(
            {"ne": 0, "n": 0, "pas": 0, "jamais": -0.5, "aucun": 0, "aucune": 0, "rien": -0.5, "sans": 0,
             "ni": 0, "personne": -0.5}
        ),
    }
)

SERVICE_WORDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "en": frozenset(
            {
                "received", "receive", "arrived", "arrive", "delivered", "refund", "refunded", "reply",
                "replied", "answer", "answered", "answers", "response", "responded", "news", "update",
                "updates", "tracking", "help", "helped", "contact", "call", "called", "working", "work",
                "works", "worked", "showed", "come", "came", "sent", "shipped", "here", "confirmation",
                "processed", "resolved", "fixed", "solution", "explanation", "apology", "compensation",
                "money", "sorted", "acknowledged", "heard", "word", "sign", "trace", "fit", "fits",
            }
        ),
        "fr": frozenset(
            {
                "recu", "recue", "recus", "recues", "recois", "recoit", "recevoir", "livre", "livree",
                "livres", "livrees", "livraison", "arrive", "arrivee", "arrives", "arrivees", "rembourse",
                "remboursee", "remboursement", "reponse", "reponses", "repondu", "repond", "repondre",
                "nouvelles", "nouvelle", "aide", "aider", "marche", "fonctionne", "envoye", "envoyee",
                "expedie", "expediee", "colis", "confirmation", "solution", "explication", "excuses",
                "geste", "rappele", "rappelee", "rappel", "suivi", "retour", "traite", "traitee", "trace",
                "resolu", "regle", "contacte", "contactee", "va", "convient",
            }
        ),
    }
)

INTENSIFIERS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "en": MappingProxyType(
            {
                "very": 1.4, "really": 1.4, "so": 1.3, "extremely": 1.6, "totally": 1.4, "completely": 1.4,
                "absolutely": 1.5, "incredibly": 1.5, "super": 1.4, "truly": 1.3, "such": 1.2, "utterly": 1.6,
                "bit": 0.6, "slightly": 0.6, "somewhat": 0.7, "little": 0.7, "kinda": 0.7, "quite": 1.1,
                "most": 1.2, "beyond": 1.4, "deeply": 1.5, "massively": 1.5,
            }
        ),
        "fr": MappingProxyType(
            {
                "tres": 1.4, "vraiment": 1.4, "trop": 1.3, "tellement": 1.4, "completement": 1.5,
                "totalement": 1.5, "absolument": 1.5, "extremement": 1.6, "peu": 0.6, "assez": 1.1,
                "plutot": 0.8, "carrement": 1.5, "franchement": 1.2, "hyper": 1.5, "vachement": 1.4,
                "profondement": 1.5, "particulierement": 1.3, "legerement": 0.6, "si": 1.2,
            }
        ),
    }
)

BUT: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "en": frozenset({"but", "however", "though"}),
        "fr": frozenset({"mais", "pourtant", "cependant", "neanmoins", "toutefois"}),
    }
)

FUNCTION_WORDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "fr": frozenset(
            "le la les de des du je j vous est et un une mon ma mes pas que qui pour avec sur c n ne il elle "
            "nous ai au aux ce cette votre vos bonjour merci toujours rien depuis commande suis sont tres "
            "mais jamais ca qu d l m s t y en".split()
        ),
        "en": frozenset(
            "the i you my is and an of to it for with on not have has was this that your hi hello thanks "
            "please me we are be still no order been since can could would just any what why".split()
        ),
    }
)
