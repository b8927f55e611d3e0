"""Dead letters and what errors leave in logs."""


def test_logged_errors_name_the_place_not_the_message():
    from streams.deadletters import where

    try:
        {"M123456": 1}["M999 JANE DOE"]
    except KeyError as exc:
        text = where(exc)
    assert text.startswith("KeyError at test_deadletters.py:") and "JANE" not in text and "M999" not in text
