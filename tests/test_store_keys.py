from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from nimrunbook.store.keys import NgcUri, looks_like_nim_key, object_key, uri_of_key


def test_the_documented_example():
    assert object_key("ngc://nim/meta/llama3-8b-instruct:hf?file=config.json") == (
        "nim%2Fmeta%2Fllama3-8b-instruct%3Ahf%3Ffile%3Dconfig.json"
    )


def test_real_tags_with_plus_and_dots():
    uri = "ngc://nim/meta/llama-3.2-1b-instruct:hf-e9f8eff-nim1.5+?file=model.safetensors"
    assert object_key(uri) == "nim%2Fmeta%2Fllama-3.2-1b-instruct%3Ahf-e9f8eff-nim1.5%2B%3Ffile%3Dmodel.safetensors"
    assert looks_like_nim_key(object_key(uri))
    parsed = NgcUri.parse(uri)
    assert (parsed.repo, parsed.tag, parsed.file) == (
        "nim/meta/llama-3.2-1b-instruct",
        "hf-e9f8eff-nim1.5+",
        "model.safetensors",
    )
    assert parsed.model_dirs() == [
        "models--nim--meta--llama-3.2-1b-instruct",
        "models--nim--meta--llama-3_2-1b-instruct",
    ]


def test_foreign_keys_are_recognised():
    assert not looks_like_nim_key("backups/db.sql")
    assert not looks_like_nim_key("README.txt")


@given(st.text(min_size=1))
def test_keys_round_trip_and_equal_quote_with_no_safe_characters(rest):
    uri = "ngc://" + rest
    assert object_key(uri) == quote(rest, safe="")
    assert uri_of_key(object_key(uri)) == uri
