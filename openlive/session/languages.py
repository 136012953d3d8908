"""The languages the Live API lists for speechConfig.languageCode, by name for the LLM."""

from __future__ import annotations

LIVE_LANGUAGES: dict[str, str] = {
    "ar-XA": "Arabic", "bn-IN": "Bengali", "cmn-CN": "Mandarin Chinese", "de-DE": "German",
    "en-AU": "English", "en-GB": "English", "en-IN": "English", "en-US": "English",
    "es-ES": "Spanish", "es-US": "Spanish", "fr-CA": "French", "fr-FR": "French",
    "gu-IN": "Gujarati", "hi-IN": "Hindi", "id-ID": "Indonesian", "it-IT": "Italian",
    "ja-JP": "Japanese", "kn-IN": "Kannada", "ko-KR": "Korean", "ml-IN": "Malayalam",
    "mr-IN": "Marathi", "nl-NL": "Dutch", "pl-PL": "Polish", "pt-BR": "Portuguese",
    "ru-RU": "Russian", "ta-IN": "Tamil", "te-IN": "Telugu", "th-TH": "Thai",
    "tr-TR": "Turkish", "vi-VN": "Vietnamese",
}

_BY_LOWER = {code.lower(): code for code in LIVE_LANGUAGES}


def canonical_language(code: str) -> str | None:
    """The Live API's spelling of a language code ("de-de" -> "de-DE"), or None if not listed."""
    return _BY_LOWER.get(code.strip().lower().replace("_", "-"))


def language_name(code: str | None) -> str | None:
    canonical = canonical_language(code) if code else None
    return LIVE_LANGUAGES.get(canonical) if canonical else None


# Each language in its own name: small models follow "answer in German (Deutsch)" more reliably.
NATIVE_NAMES: dict[str, str] = {
    "Arabic": "العربية", "Bengali": "বাংলা", "Mandarin Chinese": "中文", "German": "Deutsch",
    "Spanish": "español", "French": "français", "Gujarati": "ગુજરાતી", "Hindi": "हिन्दी",
    "Indonesian": "Bahasa Indonesia", "Italian": "italiano", "Japanese": "日本語", "Kannada": "ಕನ್ನಡ",
    "Korean": "한국어", "Malayalam": "മലയാളം", "Marathi": "मराठी", "Dutch": "Nederlands", "Polish": "polski",
    "Portuguese": "português", "Russian": "русский", "Tamil": "தமிழ்", "Telugu": "తెలుగు", "Thai": "ไทย",
    "Turkish": "Türkçe", "Vietnamese": "Tiếng Việt",
}


def language_instruction(code: str | None) -> str | None:
    """What the LLM is told when the session asked for a language: "Always answer in German (Deutsch)."."""
    name = language_name(code)
    if name is None:
        return None
    native = NATIVE_NAMES.get(name)
    return f"Always answer in {name} ({native})." if native else f"Always answer in {name}."
