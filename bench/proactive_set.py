"""A labelled set for proactive audio: words a microphone in a room picked up, said to the assistant or not.

Each item: what the assistant said last (None: nothing yet), the words heard, whether they were
said to the assistant, a kind, and a split. Kinds said to the assistant: questions, commands,
short follow-ups after an answer ("thanks", "and tomorrow?", an answer to its question) and
greetings or statements to it. Kinds not said to it: side talk to someone else in the room, TV
and radio, public announcements, self-talk, and one half of a phone call. Written for this
benchmark, not taken from any corpus; each item is clear to a person reading it with its context.

The split alternates within each kind: "tune" items chose session/proactivity.py's wording and
threshold, "held_out" items were only ever measured (bench/proactive.py reports them apart).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    last: str | None  # what the assistant said last
    words: str  # what the microphone heard
    addressed: bool  # said to the assistant
    kind: str
    split: str = ""


_ADDRESSED: dict[str, list[tuple[str | None, str]]] = {
    "question": [
        (None, "What's the weather going to be like in Lisbon tomorrow?"),
        (None, "How many tablespoons are in a cup?"),
        ("Paris is the capital of France.", "How far is it from Paris to Lyon?"),
        (None, "Hey, what time is it in Tokyo right now?"),
        ("You're welcome!", "Do you know a good recipe for banana bread?"),
        (None, "Who won the World Cup in 2018?"),
        ("Sure, I can help with that.", "What's the square root of 144?"),
        (None, "Hi! Could you explain how a heat pump works?"),
    ],
    "command": [
        (None, "Set a timer for ten minutes."),
        (None, "Remind me to call the dentist at four."),
        ("The timer is set for ten minutes.", "Make that fifteen instead."),
        (None, "Tell me a joke."),
        (None, "Translate 'where is the station' into German."),
        ("Here is a short poem about the sea: waves fold over, grey and slow, and take the sand where they go.",
         "Write another one, but about mountains."),
    ],
    "follow_up": [
        ("Tomorrow in Lisbon it will be sunny with a high of 24 degrees.", "And the day after?"),
        ("The timer is set for ten minutes.", "Thanks!"),
        ("Berlin is about 880 kilometres from Paris.", "And Rome?"),
        ("A heat pump moves heat from the outside air into your home with a refrigerant cycle.",
         "Why is that more efficient than a heater?"),
        ("Why did the scarecrow win an award? Because he was outstanding in his field.",
         "Ha, that's a good one. Another one?"),
        ("It's 3 pm in Tokyo right now.", "Great, thank you."),
        ("Which city do you mean?", "Vienna."),
        ("Would you like me to set a reminder for that?", "Yes please."),
        ("The recipe needs three ripe bananas and two cups of flour.", "Sorry, can you repeat that?"),
        ("It will rain in London this afternoon.", "and tomorrow?"),
    ],
    "to_assistant": [
        (None, "Hello, are you there?"),
        ("Nice to meet you! What should I call you?", "I'm Sam."),
        (None, "Okay, I need some help planning dinner for six people."),
        ("Is there anything else I can help you with?", "No, that's all for now, thanks."),
    ],
}

_NOT_ADDRESSED: dict[str, list[tuple[str | None, str]]] = {
    "side_talk": [
        ("Tomorrow in Lisbon it will be sunny.", "Honey, did you remember to feed the cat?"),
        (None, "Kids, dinner's ready, come downstairs!"),
        ("The timer is set for ten minutes.", "Tom, can you pass me the salt?"),
        ("Berlin is about 880 kilometres from Paris.", "Mark, you left your jacket in my car yesterday."),
        (None, "Sarah, are you coming with us to the cinema tonight?"),
        ("It's 3 pm in Tokyo right now.", "Put your shoes on, sweetie, we're leaving in five minutes."),
        (None, "Did you see what Jenny posted last night? I couldn't stop laughing."),
        ("Here is a recipe for pancakes: flour, milk, two eggs and a pinch of salt.", "Mum, can I have a biscuit?"),
    ],
    "tv_radio": [
        (None, "And that's a yellow card for the defender, his second of the night, so he's off."),
        ("It will rain in London this afternoon.",
         "Coming up after the break: we meet the man who built a house out of glass bottles."),
        (None, "This is Radio Four. The news at six o'clock, read by Alice Jones."),
        (None, "Buy one, get one free on all mattresses, this weekend only at Dream Beds."),
        ("The capital of Australia is Canberra.", "Previously on Grey's Anatomy."),
        (None, "Temperatures tonight will drop to around four degrees, with patchy fog in the east. Back to you, Jim."),
    ],
    "announcement": [
        (None, "The train now arriving at platform four is the ten fifteen service to Manchester Piccadilly."),
        (None, "Attention shoppers, the store will be closing in fifteen minutes."),
        ("Your flight leaves at nine.", "Passengers for flight BA 284 to Madrid, please proceed to gate 12."),
        (None, "Please mind the gap between the train and the platform."),
    ],
    "self_talk": [
        (None, "Where did I put my keys... they were right here a minute ago."),
        ("The recipe needs three ripe bananas and two cups of flour.",
         "Okay, flour, then the eggs, then... hmm, where's the whisk."),
        (None, "Ugh, this printer never works when I need it."),
        (None, "Hmm, let me think. Seven times eight is fifty-six, carry the five."),
        ("It is 18 degrees outside.", "Oh no, I forgot to buy milk again."),
    ],
    "phone_call": [
        (None, "Hi mum! Yeah, I'm fine, just got home from work."),
        ("The timer is set for ten minutes.", "Yeah, I'm on my way, I'll be there in about twenty minutes."),
        (None, "Sorry, the line is really bad. Can you hear me now? Okay, so Thursday works for me."),
        ("The weather in Rome is sunny.", "Uh-huh. Yeah. No, I told him that already. Okay, talk to you later, bye."),
        (None, "Hi, it's Anna, I'm calling about the invoice you sent us last week."),
    ],
}


def _items(kinds: dict[str, list[tuple[str | None, str]]], addressed: bool) -> list[Item]:
    return [Item(last, words, addressed, kind, "tune" if i % 2 == 0 else "held_out")
            for kind, rows in kinds.items() for i, (last, words) in enumerate(rows)]


ITEMS: list[Item] = _items(_ADDRESSED, True) + _items(_NOT_ADDRESSED, False)
# The instruction the sessions of the benchmark run with (a generic app's).
INSTRUCTION = "You are a helpful voice assistant."
