"""Model references: the one parser every caller uses."""

from __future__ import annotations

import pytest

from vidpipe.modelref import ModelSelector, parse_model_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("coco-centernet@production", ("coco-centernet", "production", None)),
        ("coco-centernet/3", ("coco-centernet", None, "3")),
        ("models:/acme-ssdlite@candidate", ("acme-ssdlite", "candidate", None)),
        ("models:/acme-ssdlite/12", ("acme-ssdlite", None, "12")),
    ],
)
def test_parse_model_ref(text: str, expected: tuple[str, str | None, str | None]) -> None:
    ref = parse_model_ref(text)
    assert (ref.name, ref.alias, ref.version) == expected
    assert parse_model_ref(ref.uri) == ref == parse_model_ref(ref.short)


@pytest.mark.parametrize(
    "text", ["coco-centernet", "a@b/c", "@prod", "a/", "a b@c", "a/0", "models:/a", "m:/a@b"]
)
def test_parse_model_ref_when_malformed_then_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="NAME@ALIAS or models:/NAME/VERSION"):
        parse_model_ref(text)


def test_model_selector_when_both_alias_and_version_then_invalid() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ModelSelector(name="m", alias="production", version="1")
    assert ModelSelector(name="m", version="2").uri == "models:/m/2"
