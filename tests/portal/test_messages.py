from flask_babel import force_locale

from portal.messages import review_reason_text


def test_held_bill_reasons_read_as_sentences_in_both_languages(app) -> None:
    stored = "estimated_reading; usage_high kwh=900 average=200.00 months=6"
    with app.test_request_context(), force_locale("en"):
        assert review_reason_text(stored) == [
            "The reading is an estimate, not a meter reading.",
            "Usage of 900 kWh is far above the average of 200.00 kWh over the previous 6 months."]
    with app.test_request_context(), force_locale("zh_Hans_CN"):
        assert review_reason_text(stored)[1] == (
            "本期用电 900 千瓦时，远高于前 6 个月的平均值 200.00 千瓦时。")


def test_a_reason_missing_its_details_shows_its_code(app) -> None:
    with app.test_request_context(), force_locale("en"):
        assert review_reason_text("usage_low kwh=1") == ["usage_low"]
        assert review_reason_text(None) == []
