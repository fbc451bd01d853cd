import logging

from nimrunbook.redact import RedactingFilter, redact, register_secret


def test_known_values_and_key_shapes_are_masked(monkeypatch):
    monkeypatch.setenv("NGC_API_KEY", "my-ngc-secret-value")
    register_secret("registry-pass-1234")
    text = (
        "key my-ngc-secret-value and registry-pass-1234, echoed nvapi-AbCdEf0123456789xyz, "
        "aws AKIAABCDEFGHIJKLMNOP password=hunter22"
    )
    masked = redact(text)
    for secret in ("my-ngc-secret-value", "registry-pass-1234", "nvapi-AbCdEf", "AKIAABCDEFGHIJKLMNOP", "hunter22"):
        assert secret not in masked
    assert "password=***" in masked


def test_logging_filter(caplog, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-abc")
    logger = logging.getLogger("nimrunbook.test")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="nimrunbook.test"):
        logger.info("using %s", "s3cr3t-value-abc")
    assert "s3cr3t-value-abc" not in caplog.text and "***" in caplog.text
