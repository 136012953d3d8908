"""Cutting streamed LLM text into speakable clauses."""

from openlive.session.speech import ClauseSegmenter, pcm_chunks, speakable


def feed(text: str, step: int = 3) -> list[str]:
    seg = ClauseSegmenter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += seg.push(text[i:i + step])
    return out + seg.flush()


def test_first_piece_is_an_early_clause_then_whole_sentences():
    text = "Well, the capital is Paris, a city on the Seine. It has many museums, parks and cafes. Enjoy!"
    assert feed(text) == ["Well, the capital is Paris,", "a city on the Seine.",
                          "It has many museums, parks and cafes.", "Enjoy!"]


def test_a_short_opening_word_is_not_cut_alone():
    assert feed("Yes, of course. Here it is.")[0] == "Yes, of course."


def test_decimals_and_trailing_text_without_punctuation():
    assert feed("Pi is 3.14 roughly. And then some more words") == ["Pi is 3.14 roughly.", "And then some more words"]


def test_run_on_text_is_capped():
    pieces = feed("word " * 120)
    assert len(pieces) > 1 and all(len(p) <= 220 for p in pieces)


def test_markdown_is_not_read_aloud():
    assert speakable("**Bold** and `code` and [a link](http://x.y) # title") == "Bold and code and a link title"
    assert feed("* * *\n") == []


def test_pcm_chunks_keep_samples_whole():
    pcm = bytes(range(200)) * 100
    chunks = pcm_chunks(pcm, 24000, 0.1)
    assert b"".join(chunks) == pcm and all(len(c) % 2 == 0 for c in chunks[:-1])
    assert len(chunks[0]) == 4800


def test_a_long_first_sentence_starts_speaking_after_a_few_words():
    pieces = feed("The history of the bicycle begins in the early nineteenth century in Germany. Then more.")
    assert pieces[0] == "The history of the bicycle"
    assert pieces[1] == "begins in the early nineteenth century in Germany."
    assert feed("Paris is the capital of it all, say some. Then more.")[0] == "Paris is the capital"  # not "... of"
    assert feed("Paris is in France.") == ["Paris is in France."]  # short: whole
