from analytics.hashing import canonical_json, random_hex12, sha256_hex, short_hash

SPEC_INPUT = {
    "plan": [{"skill": "http_call", "params": {"url": "https://api.example.com"}}],
    "budget_cents": 100,
}


def test_canonical_json_sorts_keys_and_drops_whitespace():
    # when
    text = canonical_json(SPEC_INPUT)

    # then
    assert text == (
        '{"budget_cents":100,"plan":[{"params":{"url":"https://api.example.com"},'
        '"skill":"http_call"}]}'
    )


def test_sha256_and_short_hash_of_the_spec_example():
    # when
    digest = sha256_hex(SPEC_INPUT)

    # then
    assert digest == "7d2218dea0c346cef5c416bc1520a16976c757f796c4d16416f68c426b403e25"
    assert short_hash(SPEC_INPUT) == "7d2218dea0c346ce"
    assert short_hash(SPEC_INPUT, length=8) == "7d2218de"


def test_key_order_does_not_change_the_hash():
    # given
    reordered = {
        "budget_cents": 100,
        "plan": [{"params": {"url": "https://api.example.com"}, "skill": "http_call"}],
    }

    # then
    assert sha256_hex(reordered) == sha256_hex(SPEC_INPUT)


def test_floats_keep_their_decimal_point_and_ints_do_not():
    # then
    assert canonical_json({"a": 500.0, "b": 3.56, "c": 0.0, "d": 500}) == (
        '{"a":500.0,"b":3.56,"c":0.0,"d":500}'
    )
    assert sha256_hex(500) != sha256_hex(500.0)


def test_non_ascii_is_escaped():
    # then
    assert canonical_json({"name": "café"}) == '{"name":"caf\\u00e9"}'


def test_random_hex12_is_twelve_lowercase_hex_characters():
    # when
    first, second = random_hex12(), random_hex12()

    # then
    assert len(first) == 12
    assert set(first) <= set("0123456789abcdef")
    assert first != second
