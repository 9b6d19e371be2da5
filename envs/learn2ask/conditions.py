"""The synthetic Learn2Ask world: a small table of conditions and the key topics a clinician must cover for each.

Four chief complaints, three or four conditions each, with 2 to 5 key topics that overlap or nest inside a
complaint, so the questions already asked rarely identify the condition. A pack's hidden condition comes from the
pack seed; a row's seed fixes how many of its topics were already covered (all of them: the right move is
``<stop />``) and in which order. :func:`materialize` turns a synthetic row into the documented dialogue schema, so
synthetic and real rows take the same path through the environment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Topic:
    """A piece of key information: the reference item the judge sees, a question asking for it, an answer."""

    item: str
    question: str
    answer: str


TOPICS: dict[str, Topic] = {
    "duration": Topic(
        "how long the symptoms have lasted",
        "How long have you had these symptoms: under a day, a few days, or over a week?",
        "About four days now.",
    ),
    "light": Topic(
        "sensitivity to light", "Does bright light bother you, yes or no?", "Yes, I keep the curtains shut."
    ),
    "nausea": Topic("nausea or vomiting", "Do you feel nauseous or have you vomited, yes or no?", "Yes, a little."),
    "aura": Topic(
        "zigzag lines or blind spots before it starts (aura)",
        "Do you see zigzag lines or blind spots before it starts, yes or no?",
        "Yes, sometimes.",
    ),
    "stress": Topic("recent stress", "Have you been under unusual stress lately, yes or no?", "Yes, work is hectic."),
    "neck": Topic("tight neck or shoulders", "Do your neck or shoulders feel tight, yes or no?", "Yes, very stiff."),
    "fever": Topic("fever", "Have you had a fever, yes or no?", "Yes, 38 degrees yesterday."),
    "congestion": Topic("blocked or runny nose", "Is your nose blocked or runny, yes or no?", "Yes, it is blocked."),
    "facial": Topic(
        "pressure around the cheeks or eyes",
        "Do you feel pressure around your cheeks or eyes, yes or no?",
        "Yes, mostly the cheeks.",
    ),
    "sore_throat": Topic("sore throat", "Is your throat sore, yes or no?", "Yes, it hurts to swallow."),
    "wheeze": Topic(
        "wheezing or whistling breath",
        "Do you hear a whistling sound when you breathe, yes or no?",
        "Yes, at times.",
    ),
    "night": Topic("cough worse at night", "Is the cough worse at night, yes or no?", "Yes, it wakes me up."),
    "exercise": Topic(
        "triggered by exercise or cold air",
        "Does exercise or cold air trigger it, yes or no?",
        "Yes, when I run.",
    ),
    "heartburn": Topic(
        "heartburn behind the breastbone",
        "Do you get heartburn behind the breastbone, yes or no?",
        "Yes, often.",
    ),
    "lying": Topic(
        "trouble when lying down flat",
        "Does it get bad when lying down flat, yes or no?",
        "Yes, in bed.",
    ),
    "diarrhea": Topic("diarrhea", "Have you had diarrhea, yes or no?", "Yes, several times."),
    "lower_right": Topic(
        "pain in the lower right abdomen",
        "Is the pain mostly in the lower right of your belly, yes or no?",
        "Yes, down on the right.",
    ),
    "appetite": Topic("loss of appetite", "Have you lost your appetite, yes or no?", "Yes, I skip meals."),
    "fatty": Topic("pain after fatty meals", "Does it start after fatty food, yes or no?", "Yes, after fried food."),
    "shoulder": Topic(
        "pain spreading to the shoulder blade",
        "Does the pain spread to your shoulder blade, yes or no?",
        "Yes, on the right.",
    ),
    "itching": Topic("itching", "Is it itching, yes or no?", "Yes, a lot."),
    "dry": Topic("dry or scaly skin", "Is the skin dry or scaly, yes or no?", "Yes, flaky."),
    "allergy": Topic("history of allergies or asthma", "Do you have allergies or asthma, yes or no?", "Yes."),
    "new_product": Topic(
        "new soap, cream or detergent",
        "Have you started a new soap, cream or detergent, yes or no?",
        "Yes, a new detergent.",
    ),
    "blisters": Topic("small blisters", "Are there small blisters, yes or no?", "Yes, tiny ones."),
    "welts": Topic(
        "raised welts that come and go",
        "Do raised welts come and go within hours, yes or no?",
        "Yes, they move around.",
    ),
    "swelling": Topic("swollen lips or eyelids", "Are your lips or eyelids swollen, yes or no?", "Yes, my lips."),
}

COMPLAINTS: dict[str, str] = {
    "headache": "I have had a headache that will not go away.",
    "cough": "I have had a cough for a while.",
    "abdominal pain": "My stomach has been hurting.",
    "rash": "I have a rash on my skin.",
}


@dataclass(frozen=True)
class Condition:
    """A hidden condition: its chief complaint and its key topics (all must be covered before stopping)."""

    name: str
    complaint: str
    topics: tuple[str, ...]


CONDITIONS: tuple[Condition, ...] = (
    Condition("tension headache", "headache", ("duration", "stress", "neck")),
    Condition("migraine", "headache", ("duration", "stress", "neck", "light", "nausea")),
    Condition("sinusitis", "headache", ("duration", "fever", "congestion", "facial")),
    Condition("common cold", "cough", ("duration", "sore_throat", "congestion")),
    Condition("influenza", "cough", ("duration", "sore_throat", "congestion", "fever")),
    Condition("asthma", "cough", ("duration", "wheeze", "night", "exercise")),
    Condition("reflux cough", "cough", ("duration", "heartburn", "lying", "night")),
    Condition("viral gastroenteritis", "abdominal pain", ("duration", "diarrhea", "nausea")),
    Condition("bacterial food poisoning", "abdominal pain", ("duration", "diarrhea", "nausea", "fever")),
    Condition("appendicitis", "abdominal pain", ("duration", "lower_right", "appetite", "fever", "nausea")),
    Condition("gallstones", "abdominal pain", ("fatty", "shoulder", "nausea")),
    Condition("irritant contact dermatitis", "rash", ("new_product", "itching")),
    Condition("allergic contact dermatitis", "rash", ("new_product", "itching", "blisters", "allergy")),
    Condition("eczema", "rash", ("duration", "itching", "dry", "allergy")),
    Condition("urticaria", "rash", ("itching", "welts", "swelling", "allergy", "new_product")),
)
"""Some conditions extend another of the same complaint (cold -> influenza, tension headache -> migraine), so a
dialogue that covered the smaller one's topics may be complete or not: only the pack's condition tells."""
ITEM_SEPARATOR = "; "
"""``info_truth`` joins the reference items with this separator (items may contain commas)."""


def pack_condition(pack_seed: int) -> Condition:
    """The hidden condition shared by every task (and rollout) of a pack."""
    return CONDITIONS[random.Random(f"learn2ask.condition.{pack_seed}").randrange(len(CONDITIONS))]


def materialize(row: dict[str, Any], pack_seed: int) -> dict[str, Any]:
    """A synthetic row as a dialogue in the loader's schema: ``messages``, ``decision_truth``, ``info_truth``."""
    cond = pack_condition(pack_seed)
    rng = random.Random(f"learn2ask.row.{int(row.get('seed', 0))}")
    covered = rng.randint(1, len(cond.topics))
    order = list(cond.topics)
    rng.shuffle(order)
    asked, missing = order[:covered], order[covered:]
    messages = [{"role": "user", "content": COMPLAINTS[cond.complaint]}]
    for topic in asked:
        messages.append({"role": "assistant", "content": TOPICS[topic].question})
        messages.append({"role": "user", "content": TOPICS[topic].answer})
    return {
        "cid": f"synthetic-{row.get('seed', 0)}",
        "messages": messages,
        "decision_truth": "continue" if missing else "stop",
        "info_truth": ITEM_SEPARATOR.join(TOPICS[t].item for t in missing) if missing else "None",
    }
