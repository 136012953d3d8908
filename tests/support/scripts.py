"""Rules for the scripted engine that several tests share (TOML `[[reply]]` tables).

They let a deterministic engine show what reached the model: the conversation (a name said
earlier) and the system prompt in force.
"""

# "What is my name?" is answered from what the user said before: proves history arrived.
RECALL_NAME = r"""
[[reply]]
match = "what is my name"
recall = 'my name is (\w+)'
text = "Your name is {recall}."
"""

# Anything about the "instruction" repeats the system prompt and counts the messages.
ECHO_INSTRUCTION = """
[[reply]]
match = "instruction"
text = "I was told: {system} ({turns} messages)"
"""
