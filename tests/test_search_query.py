"""Parse once (retrieval/search/query.py, indexer/storage/sizes.py): one reading of ``VALUE^WEIGHT``
and of sizes, shared by the CLI, the HTTP API and Python."""

from __future__ import annotations

import pytest

from indexer.storage.autotype import parse_memory
from indexer.storage.sizes import SizeError, parse_size
from retrieval import Weighted
from retrieval.search import filters
from retrieval.search.query import QueryError, split_weight


@pytest.mark.parametrize(
    "value, expected",
    [
        ("rain^0.5", ("rain", 0.5)),
        ("rain^1e3", ("rain", 1000.0)),  # the CLI took this as the text "rain^1e3", the API as 1000
        ("rain^-.3", ("rain", -0.3)),
        ("a^b", None),
        ("x^2^3", ("x^2", 3.0)),
        ("^2", None),
        ("2^", None),
        ("beach.jpg^0.25", ("beach.jpg", 0.25)),
    ],
)
def test_the_cli_and_the_api_read_a_weight_alike(value: str, expected) -> None:
    import cli
    from retrieval.server.params import weighted

    assert split_weight(value) == expected
    api = weighted(value, "q")
    by_cli = cli._weighted([value], is_file=False)[0]
    if expected is None:
        assert api == by_cli == value
    else:
        assert api == by_cli == Weighted(*expected)


@pytest.mark.parametrize("value", ["dog^0", "dog^1e-320", "a^1e308", "dog^nan", "dog^-inf", "dog^5000"])
def test_a_weight_out_of_range_is_refused_everywhere(value: str) -> None:
    import cli
    from retrieval.server.params import ApiError, weighted

    with pytest.raises(QueryError, match="weight"):
        split_weight(value)
    with pytest.raises(QueryError, match="weight"):
        cli._weighted([value], is_file=False)
    with pytest.raises(ApiError) as caught:
        weighted(value, "q")
    assert caught.value.status == 400 and caught.value.field == "q"


def test_a_file_named_like_a_weight_stays_a_file(tmp_path) -> None:
    import cli

    odd = tmp_path / "shot^2"
    odd.write_bytes(b"x")
    assert cli._weighted([str(odd)], is_file=True) == [str(odd)]
    assert cli._weighted([str(odd)], is_file=False) == [Weighted(str(tmp_path / "shot"), 2.0)]


@pytest.mark.parametrize(
    "text, expected",
    [("2G", 2 << 30), ("512MiB", 512 << 20), ("1.5gb", 3 << 29), ("500k", 500 << 10), ("1024", 1024), ("3 T", 3 << 40)],
)
def test_one_size_parser_for_memory_and_filters(text: str, expected: int) -> None:
    assert parse_size(text) == parse_memory(text) == filters.parse_size(text, "min_size") == expected


@pytest.mark.parametrize("text", ["lots", "2Q", "-5", "", "9" * 30, "99999999999T"])
def test_a_bad_size_is_refused_by_each_reader_in_its_own_error(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size(text)
    with pytest.raises(ValueError, match="--max-memory"):
        parse_memory(text)
    with pytest.raises(QueryError, match="min_size"):
        filters.parse_size(text, "min_size")
    with pytest.raises(ValueError, match="above 0"):
        parse_memory("0")
