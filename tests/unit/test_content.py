"""Message content (campaigns.content): personalisation checked before anything is created,
fallbacks, spintax, variants chosen deterministically per recipient, template parameters, and
the outgoing message built from them (campaigns.messages). Pure: no database, no gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns import content, inputs, messages
from campaigns.content import EntryChecker, choose, plan, render, template_check
from campaigns.domain import Campaign, CampaignStatus, ClaimedRecipient
from campaigns.errors import InvalidArgument, InvalidInput, InvalidMessage
from campaigns.gateways.cloud_api import build_body
from tests.conftest import ROOT
from tests.contracts import validate_cloud_request

COLUMNS = ("city", "name")
LABEL = r"[1-9][0-9]*(:[0-9]+(\.[0-9]+)*)?"


def text(
    p: content.ContentPlan,
    variables: dict[str, str] | None,
    position: int = 1,
    columns: tuple[str, ...] = COLUMNS,
    label: str | None = None,
    cid: int = 7,
) -> str:
    return render(p, columns, label, variables, campaign_id=cid, position=position)


def check(
    p: content.ContentPlan,
    rows: list[dict[str, str] | None],
    template: dict[str, Any] | None = None,
) -> tuple[str, ...]:
    checker = EntryChecker(p, template)
    for row in rows:
        checker.see(row)
    return checker.finish()


# ---------------------------------------------------------------------------- variables


def test_a_variable__takes_the_recipients_value() -> None:
    assert text(plan("Olá {name}, de {city}!"), {"name": "Ana", "city": "SP"}) == "Olá Ana, de SP!"


@pytest.mark.parametrize("variables", [{"name": ""}, {"name": "   "}, {"name": "\t\n"}, {}, None])
def test_a_fallback__replaces_an_empty_blank_or_missing_value(
    variables: dict[str, str] | None,
) -> None:
    assert text(plan("Olá {name|cliente}!"), variables) == "Olá cliente!"
    assert text(plan("Olá { name | cliente }!"), variables) == "Olá cliente!"  # spaces dropped


def test_a_fallback__is_not_used_when_the_value_is_there() -> None:
    assert text(plan("Olá {name|cliente}!"), {"name": " Ana"}) == "Olá  Ana!"


def test_an_empty_fallback__drops_the_variable() -> None:
    assert text(plan("Olá{ name|}!"), {"name": ""}) == "Olá!"


def test_an_empty_required_value__raises_rather_than_half_render() -> None:
    with pytest.raises(InvalidMessage, match=r"recipient #3: its 'name' is empty .* no fallback"):
        text(plan("Olá {name}!"), {"name": "  "}, position=3)


def test_double_braces__are_literal_braces() -> None:
    p = plan('{{"id": {name}}} and {{name}} and }}{{')
    assert text(p, {"name": "Ana"}) == '{"id": Ana} and {name} and }{'


# ---------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("Olá {name", "the message has a '{' that is never closed at character 5"),
        ("Olá name}", "the message has a '}' that closes no '{' at character 9"),
        ("{{name}", "a '}' that closes no '{' at character 7"),
        ("{a|{b|c}}", "a group inside a group (not supported) at character 4"),
        ("{a|{{b}}}", "a group inside a group (not supported) at character 4"),
        ("Oi {}", "the group {} at character 4"),
        ("Oi {ola mundo}", "which is neither a variable name nor a spintax of two or more"),
        ("Oi {Olá}", "the group {Olá} at character 4"),
    ],
)
def test_bad_syntax__is_refused_naming_where(message: str, words: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        plan(message)
    assert words in str(caught.value)
    assert "write {{ and }} for a literal brace; nothing was created" in str(caught.value)


def test_a_syntax_error_in_a_variant__names_the_variant_1_based() -> None:
    with pytest.raises(
        InvalidMessage,
        match=r"^variant 3 has a '\{' that is never closed at "
        r"character 4 \(near 'Oi {name'\)",
    ):
        plan("Olá", ["Bom dia", "Oi {name"])
    with pytest.raises(InvalidMessage, match=r"^variant 1 \(the message\) has a '\}'"):
        plan("Olá}", ["Bom dia"])


@pytest.mark.parametrize(
    ("variants", "error", "words"),
    [
        ("Oi", InvalidArgument, "variants must be a list of message texts, got a str"),
        ({"Oi"}, InvalidArgument, "got a set"),
        (["Oi", 3], InvalidMessage, "the variant 3 must be text (str), got a int"),
        (["Oi", "  "], InvalidMessage, "the variant 3 is empty"),
        (["x" * 4097], InvalidMessage, "the variant 2 has 4097 characters"),
        (["Oi"] * 100, InvalidArgument, "variants holds 100 texts; a campaign takes at most 99"),
    ],
)
def test_bad_variants__are_refused(variants: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as caught:
        plan("Olá", variants)
    assert words in str(caught.value)


# ---------------------------------------------------------------------------- spintax


def test_spintax__picks_each_option_across_recipients_and_keeps_it_as_written() -> None:
    p = plan("{Olá|Oi| Bom dia|}, tudo bem?")
    seen = {text(p, None, position=pos) for pos in range(1, 200)}
    assert seen == {"Olá, tudo bem?", "Oi, tudo bem?", " Bom dia, tudo bem?", ", tudo bem?"}


@pytest.mark.parametrize("message", ["{Olá|Oi}", "{Bom dia|Oi}", "{Oi!|Olá}", "{Hi|Hello|Hey}"])
def test_two_options_not_led_by_a_bare_name__or_three__are_spintax(message: str) -> None:
    assert check(plan(message), [{"name": "Ana"}]) == ("name",)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (
            "Olá {nmae|cliente}",
            "the message: {nmae|cliente} would be spintax, but 'nmae' looks "
            "like a variable and the list has no 'nmae' column (its columns besides the phone: "
            "city, name); fix the name, or write a two-option spintax whose first option is not a "
            "bare name ({nmae!|cliente}) or give three options",
        ),
        ("{Hi|Hello} {name}", "{Hi|Hello} would be spintax, but 'Hi' looks like a variable"),
        ("{Oi|E aí}", "first option is not a bare name ({E aí|Oi}) or give three options"),
    ],
)
def test_typo_guard__two_parts_led_by_a_bare_name_that_is_no_column_are_refused(
    message: str, words: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        check(plan(message), [{"name": "Ana", "city": "SP"}])
    assert words in str(caught.value)


def test_a_column_with_two_fallbacks__is_refused() -> None:
    with pytest.raises(InvalidMessage, match=r"\{name\|a\|b\} gives 'name' more than one fallback"):
        check(plan("Olá {name|a|b}"), [{"name": "Ana"}])


# ---------------------------------------------------------------------------- the check


def test_checker__refuses_a_variable_the_list_lacks_naming_its_columns() -> None:
    with pytest.raises(InvalidMessage) as caught:
        check(plan("Olá {name}"), [{"city": "SP"}, {"city": "RJ", "zip": "1"}])
    assert str(caught.value) == (
        "the message uses {name} but the list has no 'name' column (its columns besides the "
        "phone: city, zip); nothing was created"
    )
    with pytest.raises(InvalidMessage, match="it has no column besides the phone number"):
        check(plan("Olá {name}"), [None, None])


def test_checker__counts_empty_values_over_the_whole_list() -> None:
    rows = [{"name": "", "city": "SP"}] * 1000 + [{"name": "Ana"}] * 500
    rows += [{"name": "   "}] * 200 + [{"city": "RJ"}] * 34
    with pytest.raises(InvalidMessage) as caught:
        check(plan("Olá {name}"), [*rows, {"name": "Bia"}])
    assert str(caught.value) == (
        "1,234 recipients have an empty 'name' and the message uses {name} without a fallback; "
        "write {name|cliente} or fill the column; nothing was created"
    )
    with pytest.raises(InvalidMessage, match=r"^1 recipient has an empty 'name'"):
        check(plan("Olá {name}"), [{"name": "Ana"}, None])


def test_checker__names_the_variant_that_has_no_fallback() -> None:
    p = plan("Olá {name|cliente}", ["Oi {name}!"])
    with pytest.raises(InvalidMessage, match=r"^2 recipients have an empty 'name' and variant 2 "):
        check(p, [{"name": ""}, {"name": "Ana"}, {}])


def test_checker__passes_with_fallbacks_and_returns_the_sorted_columns() -> None:
    p = plan("Olá {name|cliente} de {city|sua cidade}", ["{Bom dia|Oi}!"])
    rows: list[dict[str, str] | None] = [{"name": "", "zip": "1"}, None, {"city": "  "}]
    assert check(p, rows) == ("city", "name", "zip")
    assert check(plan("Sem variáveis"), []) == ()


def test_checker__lists_at_most_five_problems() -> None:
    message = " ".join(f"{{v{i}}}" for i in range(8))
    with pytest.raises(InvalidMessage) as caught:
        check(plan(message), [{"name": "Ana"}])
    assert str(caught.value).count("but the list has no") == 5
    assert str(caught.value).endswith("; and 3 more; nothing was created")


def test_checker__keeps_no_per_row_state() -> None:
    checker = EntryChecker(plan("Olá {name}, {city|}", ["{Oi|Olá|Hey} {name}"]))
    row = {"name": "Ana", "city": ""}
    for _ in range(1000):  # warm up: whatever the checker allocates once
        checker.see(row)
    tracemalloc.start()
    try:
        for index in range(50_000):
            checker.see({"name": "" if index % 7 == 0 else "Ana", "city": "SP"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64_000  # one row at a time, not 50,000
    with pytest.raises(InvalidMessage, match=r"^7,143 recipients have an empty 'name'"):
        checker.finish()


# ---------------------------------------------------------------------------- choice


THREE = ("Olá {name|cliente}, {tudo bem|como vai|oi}?", ["{E aí|Oi} {name}!", "Bom dia {name}"])


def test_the_label__is_fixed_for_a_campaign_and_position() -> None:
    # blake2b of (campaign, position, which choice): the same on every machine and release
    p = plan(*THREE)
    labels = [choose(p, COLUMNS, 42, pos) for pos in range(1, 8)]
    assert labels == ["1:2", "3", "1:0", "2:1", "3", "2:1", "3"]
    assert text(p, {"name": "Ana"}, position=4, cid=42) == "Oi Ana!"


def test_the_label__is_the_same_in_other_processes() -> None:
    script = textwrap.dedent(f"""
        import json
        from campaigns.content import choose, plan
        p = plan(*{THREE!r})
        print(json.dumps([choose(p, {COLUMNS!r}, 42, pos) for pos in range(1, 500)]))
    """)
    here = [choose(plan(*THREE), COLUMNS, 42, pos) for pos in range(1, 500)]
    for seed in ("0", "1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(out.stdout) == here


def test_variants__spread_evenly_over_recipients() -> None:
    p = plan("Um", ["Dois", "Três"])
    counts = Counter(choose(p, (), 9, pos) for pos in range(1, 10_001))
    assert set(counts) == {"1", "2", "3"}
    assert all(3_100 < n < 3_570 for n in counts.values()), counts  # 3,333 ± 5 sd


def test_choices__differ_between_campaigns() -> None:
    p = plan("Um", ["Dois", "Três"])
    first = [choose(p, (), 1, pos) for pos in range(1, 101)]
    assert first != [choose(p, (), 2, pos) for pos in range(1, 101)]


def test_one_text_without_spintax__is_label_1() -> None:
    assert choose(plan("Olá {name}"), COLUMNS, 1, 1) == "1"


def test_the_label__follows_from_the_texts_so_a_loader_chooses_before_it_knows_columns() -> None:
    # {name|Olá} is a variable or refused (typo guard), never spintax: one choice, {Bom dia|Oi}
    p = plan("{name|Olá} {Bom dia|Oi} {a|b|c}", ["{x}"])
    labels = [choose(p, COLUMNS, 5, pos) for pos in range(1, 50)]
    assert labels == [choose(p, (), 5, pos) for pos in range(1, 50)]
    assert {label.count(".") for label in labels if label.startswith("1:")} == {1}
    assert text(p, {"name": "Ana"}, label="1:1.2") == "Ana Oi c"


@pytest.mark.parametrize("label", ["0", "4", "1", "1:3", "1:0.0", "2", "x", "1:", " 1:0", "٢"])
def test_a_label_that_does_not_fit__is_refused(label: str) -> None:
    with pytest.raises(InvalidArgument, match="does not fit the campaign's 3 text"):
        text(plan(*THREE), {"name": "Ana"}, label=label)


@given(
    cid=st.integers(min_value=1, max_value=2**31 - 1),
    position=st.integers(min_value=1, max_value=2**31 - 1),
    name=st.text(max_size=20),
)
def test_rendering_a_stored_label__is_rendering_the_choice_again(
    cid: int, position: int, name: str
) -> None:
    p = plan(*THREE)
    label = choose(p, COLUMNS, cid, position)
    assert re.fullmatch(LABEL, label)
    variables = {"name": name.strip() or "x"}  # whitespace-only is empty: refused up front
    assert text(p, variables, position, label=label, cid=cid) == text(
        p, variables, position, cid=cid
    )


@given(st.text(max_size=60))
def test_any_text__parses_or_is_refused_with_the_projects_error(message: str) -> None:
    try:
        p = plan(message)
    except InvalidInput:
        return
    assert p.texts == (message,)


@given(st.lists(st.sampled_from(["a", "b", " ", "é", "{{", "}}", "|", "\n"]), min_size=1))
def test_text_without_groups__renders_as_written_with_braces_unescaped(parts: list[str]) -> None:
    message = "".join(parts)
    if not message.strip():
        return
    expected = message.replace("{{", "{").replace("}}", "}")
    assert text(plan(message), {"name": "Ana"}) == expected


# ---------------------------------------------------------------------------- before the checks


def test_without_columns__old_placeholders_render_as_before() -> None:
    p = plan("Hi {name}, {x|y} {unknown}, {a|b|c}")
    rendered = text(p, {"name": "Ana", "a": "1"}, columns=())
    assert rendered[:-1] == "Hi Ana, {x|y} {unknown}, "
    assert rendered[-1] in "abc"  # 3+ parts: spintax (the new meaning)


def test_with_columns__a_group_creation_would_refuse_raises() -> None:
    with pytest.raises(InvalidMessage, match=r"uses \{zip\} but the list has no 'zip' column"):
        text(plan("Hi {zip}"), {"zip": "1"}, columns=("name",))


# ---------------------------------------------------------------------------- templates


def cloud_template(*parameters: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "body", "parameters": [{"type": "text", "text": p} for p in parameters]}
    return {"name": "order_update", "language": "pt_BR", "components": [body], **extra}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            {"body": "Olá {{1}}, seu pedido {{2}}"},
            "the template's body takes 2 parameters (its body text) but template['components'] "
            "gives 1; nothing was created",
        ),
        ({"parameter_count": 3}, "takes 3 parameters (its parameter_count) but"),
        ({"body": "Olá {{first_name}}, {{ order }}, {{first_name}}"}, "takes 2 parameters"),
        (
            {"body": "Olá {{1}}", "parameter_count": 2},
            "template['body'] has 1 parameters but template['parameter_count'] says 2",
        ),
    ],
)
def test_template_check__refuses_a_parameter_count_that_does_not_match(
    extra: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        template_check(cloud_template("{name}", **extra))
    assert words in str(caught.value)


def test_template_check__passes_matching_or_undeclared_counts() -> None:
    template_check(cloud_template("{name}", "{city}", body="Olá {{1}} de {{2}}"))
    template_check(cloud_template("{name}", parameter_count=1))
    template_check(cloud_template("{name}", "x", "y"))  # nothing declared: Meta judges
    template_check({"name": "hello_world", "body": "Hello World"})


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"body": 3}, "template['body'] must be the approved template's body text"),
        ({"parameter_count": -1}, "template['parameter_count'] must be a whole number from 0"),
        ({"parameter_count": True}, "template['parameter_count'] must be a whole number"),
        ({"parameter_count": "2"}, "template['parameter_count'] must be a whole number"),
    ],
)
def test_template_spec__checks_the_declared_body_and_count(
    extra: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        inputs.template_spec(cloud_template("{name}", **extra))
    assert words in str(caught.value)


def test_template_spec__keeps_the_declared_body_and_count() -> None:
    spec = inputs.template_spec(cloud_template("{name}", body="Olá {{1}}", parameter_count=1))
    assert spec is not None and spec["body"] == "Olá {{1}}" and spec["parameter_count"] == 1


def test_checker__checks_template_parameters_like_the_message() -> None:
    template = cloud_template("{name}", "{city|sua cidade}", body="{{1}} {{2}}")
    assert check(plan("fallback text"), [{"name": "Ana", "city": ""}], template) == COLUMNS
    with pytest.raises(InvalidMessage) as caught:
        check(plan("fallback text"), [{"name": ""}, {"city": "SP"}], template)
    assert str(caught.value).startswith(
        "2 recipients have an empty 'name' and template['components'][0]['parameters'][0]"
        "['text'] uses {name} without a fallback"
    )
    with pytest.raises(InvalidMessage, match=r"\['text'\] uses \{zip\} but the list has no"):
        check(plan("x"), [{"name": "Ana"}], cloud_template("{zip}"))
    with pytest.raises(InvalidMessage, match=r"\{a\|b\|c\} is spintax, which a template"):
        check(plan("x"), [{"name": "Ana"}], cloud_template("{a|b|c}"))
    with pytest.raises(InvalidMessage, match=r"takes 2 parameters"):
        EntryChecker(plan("x"), cloud_template("{name}", parameter_count=2))
    with pytest.raises(InvalidMessage, match=r"\['text'\] has a '\{' that is never closed"):
        EntryChecker(plan("x"), cloud_template("{name"))


# ---------------------------------------------------------------------------- build_message


NOW = datetime(2030, 1, 2, 9, tzinfo=UTC)
CAMPAIGN = Campaign(
    id=42,
    session_name="s",
    status=CampaignStatus.RUNNING,
    message="Olá {name}",
    total_numbers=3,
    total_batches=1,
    current_batch=1,
    processed_numbers=0,
    success_count=0,
    failed_count=0,
    duplicate_count=0,
    invalid_count=0,
    unknown_count=0,
    skipped_count=0,
    batch_size=300,
    min_interval=4,
    max_interval=10,
    batch_delay_min=15,
    batch_delay_max=30,
    run_token="t",
    heartbeat_at=NOW,
    next_batch_at=None,
    interrupt_reason=None,
    template=None,
    created_at=NOW,
    updated_at=NOW,
)


def claim(
    variables: dict[str, str] | None, position: int = 4, variant: str | None = None
) -> ClaimedRecipient:
    return ClaimedRecipient(42, position, 1, "+5511999990001", variables, 1, variant)


def test_build_message__renders_the_stored_variant() -> None:
    message, variants = THREE
    campaign = replace(CAMPAIGN, message=message, variants=tuple(variants), columns=COLUMNS)
    built = messages.build_message(campaign, claim({"name": "Ana"}, variant="1:1"))
    assert built.text == "Olá Ana, como vai?" and built.to == "+5511999990001"
    recomputed = messages.build_message(campaign, claim({"name": "Ana"}))  # label 2:1 at P=4
    assert recomputed.text == "Oi Ana!"


def test_build_message__parses_a_campaign_once() -> None:
    campaign = replace(CAMPAIGN, message="Oi {name|você} #unique-to-this-test", columns=COLUMNS)
    before = messages.plan_of.cache_info()
    for position in range(1, 51):
        messages.build_message(campaign, claim({"name": "Ana"}, position))
    after = messages.plan_of.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 49


def test_build_message__keeps_old_campaigns_rendering() -> None:
    old = replace(CAMPAIGN, message="Olá {name}, {sobrenome} {x|y}")
    assert messages.build_message(old, claim({"name": "Ana"})).text == "Olá Ana, {sobrenome} {x|y}"
    assert messages.build_message(old, claim(None)).text == "Olá {name}, {sobrenome} {x|y}"
    unbalanced = replace(CAMPAIGN, message="Olá {name}, veja {isto")
    assert messages.build_message(unbalanced, claim({"name": "Ana"})).text == "Olá Ana, veja {isto"
    assert messages.render("Oi {name} {x}", {"name": "Ana"}) == "Oi Ana {x}"


def test_build_message__fills_template_parameters_and_sends_no_local_keys() -> None:
    template = cloud_template(
        "{name|cliente}", "{city}", body="Olá {{1}} de {{2}}", parameter_count=2
    )
    campaign = replace(CAMPAIGN, template=template, columns=COLUMNS)
    built = messages.build_message(campaign, claim({"name": " ", "city": "SP"}))
    assert built.template is not None and built.text is None
    body = build_body(built)
    validate_cloud_request(body)
    assert body["template"] == {
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "cliente"}, {"type": "text", "text": "SP"}],
            }
        ],
    }
    assert "Olá {{1}}" not in json.dumps(body) and "parameter_count" not in json.dumps(body)


def test_build_message__old_template_campaigns_render_as_before() -> None:
    campaign = replace(CAMPAIGN, template=cloud_template("{name}", '{"raw": 1}'))
    built = messages.build_message(campaign, claim({"name": "Ana"}))
    assert built.template is not None
    parameters = built.template.components[0]["parameters"]
    assert [p["text"] for p in parameters] == ["Ana", '{"raw": 1}']


class Typist:
    typing = True
    typing_leads = True


def test_typing_plan__is_sized_to_the_longest_text() -> None:
    campaign = replace(CAMPAIGN, message="Oi", variants=("x" * 60,), min_interval=10)
    assert messages.typing_plan(Typist(), campaign) == (3.0, 3.0)
    assert messages.typing_plan(object(), campaign) == (0.0, 0.0)
