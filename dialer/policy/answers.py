"""Who answered a call: a person, or a machine (answering machine, voicemail, fax).

Providers that detect answering machines say so in their own words: Twilio and SignalWire in
`AnsweredBy` (`human`, `machine_start`, `machine_end_beep`, `machine_end_silence`,
`machine_end_other`, `fax`, `unknown`), TeleAPI in `VoicemailDetector` (`person_found`,
`voicemail`). A call a machine answered settles `machine`; `human`, `person_found` and `unknown`
stay `completed` (nothing says nobody heard it). Only for campaigns that asked for detection:
a provider's word otherwise was not asked for and is kept, not acted on.
"""

from __future__ import annotations

MACHINE_WORDS = frozenset(
    {
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        "voicemail",
        "machine",
    }
)


def normal_answer(word: str | None) -> str | None:
    """A provider's answered-by word, spelled one way: `Machine_End_Beep`, `machine-end-beep`
    and `machine end beep` are one word."""
    if word is None:
        return None
    return "_".join(str(word).strip().lower().replace("-", " ").split()) or None


def is_machine(word: str | None) -> bool:
    return normal_answer(word) in MACHINE_WORDS
