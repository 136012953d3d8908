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


def test_the_first_piece_length_is_configurable_and_still_never_ends_on_a_leading_word():
    def first(text, **words):
        seg = ClauseSegmenter(**words)
        out = []
        for i in range(0, len(text), 3):
            out += seg.push(text[i:i + 3])
        return (out + seg.flush())[0]

    text = "The sky looks blue because air scatters blue light more. Then more."
    assert first(text) == "The sky looks blue because"  # the default: five words
    assert first(text, first_min_words=2, first_max_words=3) == "The sky looks"
    assert first("Paris is the capital of it all, say some.", first_min_words=2, first_max_words=3) == "Paris is"
    assert first("Yes, of course. Here it is.", first_min_words=1, first_max_words=4) == "Yes,"


def test_speech_settings_of_the_first_piece_are_read_and_checked(tmp_path):
    import pytest

    from openlive.config import ConfigError, load_config

    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[speech]\nfirst_min_words = 2\nfirst_max_words = 4\n")
    bad.write_text("[speech]\nfirst_min_words = 5\nfirst_max_words = 4\n")
    config = load_config(good)
    assert (config.speech.first_min_words, config.speech.first_max_words) == (2, 4)
    with pytest.raises(ConfigError):
        load_config(bad)
