"""Reading /rrd_updates and the full RRD in every form hosts have sent (xsctl.xapi.rrd):
the real samples under rrd_samples/ (SOURCES.md says where each comes from), the three
JSON dialects, the number formats of f_to_s over the years, and a clear error, never a
crash, for what cannot be read."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from xsctl.xapi.rrd import RrdParseError, parse_full_rrd, parse_updates, parse_xml

SAMPLES = Path(__file__).parent / "rrd_samples"
VM = "ecd8d7a0-1be3-4d91-bd0e-4888c0e30ab3"
DOCS_ROW = [0.0, 0.0282, 209715200.0, 0.0, 0.0201, 209715200.0,
            0.0, 0.0445, 209715200.0, 0.0, 0.0243, 209715200.0]


def test_documented_example_is_refused_with_the_reason() -> None:
    with pytest.raises(RrdParseError, match=r"stray text '\.\.\.' in <data>: rows elided"):
        parse_xml((SAMPLES / "rrd-updates-01-docs.xml").read_bytes())


def test_documented_example_without_its_elision_is_read() -> None:
    u = parse_xml((SAMPLES / "rrd-updates-01-docs-clean.xml").read_bytes())
    assert (u.start, u.step, u.end) == (1213578000, 3600, 1213617600)
    assert len(u.legend) == 12 and u.legend[0] == f"AVERAGE:vm:{VM}:cpu1"
    assert u.rows == [(1213617600, DOCS_ROW)]  # %0.4f values, 0.0
    assert u.series("MAX")[("vm", VM)] == {"cpu1": [0.0], "cpu0": [0.0445],
                                           "memory": [209715200.0]}
    assert u.latest()[("vm", VM, "memory")] == 209715200.0


def test_full_rrd_sample() -> None:
    r = parse_full_rrd((SAMPLES / "host-rrd-01.xml").read_bytes())
    assert (r.step, r.last_update, r.sources) == (5, 100, ["flip_flop"])
    assert [(a.cf, a.pdp_per_row, len(a.rows)) for a in r.archives] == [
        ("AVERAGE", 1, 100), ("MIN", 1, 100), ("MAX", 1, 100)]
    times, series = r.series("MAX", 1)
    assert times[-1] == 100 and times[-2] == 95 and len(times) == 100
    known = [v for v in series["flip_flop"] if not math.isnan(v)]
    assert known[:5] == [0.0, 1.0, 1.0, 3.0, 3.0]
    assert sum(math.isnan(v) for v in series["flip_flop"]) == 80


# the same two rows in each dialect; NaN and infinities, and every number format
LEGEND = ["AVERAGE:host:h1:cpu0", "AVERAGE:host:h1:memory_total_kib",
          "AVERAGE:vm:v1:cpu0", "AVERAGE:vm:v1:vbd_xvda_read"]
EXPECT = [(1700000010, [0.0282, 8589934592.0, math.nan, math.inf]),
          (1700000005, [0.0, 85899000000.0, -math.inf, 123456.789012345])]

CURRENT = ('{"meta":{"start":1700000005,"step":5,"end":1700000010,"rows":2,"columns":4,'
           '"legend":["' + '","'.join(LEGEND) + '"]},"data":['
           '{"t":1700000010,"values":["0.0282","8589934592","NaN","Infinity"]},'
           '{"t":1700000005,"values":["0.0","8.5899e+10","-Infinity","123456.789012345"]}]}')
NUMBERS = CURRENT.replace('"0.0282"', '0.0282').replace('"8589934592"', "8589934592.0000")
YOJSON_2023 = ('{"meta":{"start":1700000005,"step":5,"end":1700000010,"rows":2,"columns":4,'
               '"legend":["' + '","'.join(LEGEND) + '"],"data":['
               '{"t":1700000010,"values":["0.0282","8589934592","NaN","Infinity"]},'
               '{"t":1700000005,"values":["0.0","8.5899e+10","-Infinity","123456.789012345"]}'
               ']}}')
JS_LITERAL = ('{meta: {start:1700000005,step:5,end:1700000010,rows:2,columns:4,\n'
              'legend:["' + '","'.join(LEGEND) + '"]},\ndata:['
              '{t:1700000010,values:[0.0282,8589934592.0000,NaN,Infinity]},'
              '{t:1700000005,values:[0.0,8.5899e+10,-Infinity,123456.789012345]}]}')
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta><start>1700000005</start>'
       '<step>5</step><end>1700000010</end><rows>2</rows><columns>4</columns><legend>'
       + "".join(f"<entry>{e}</entry>" for e in LEGEND) + '</legend></meta><data>'
       '<row><t>1700000010</t><v>0.0282</v><v>8.5899e+09</v><v>NaN</v><v>Infinity</v></row>'
       '<row><t>1700000005</t><v>0.0</v><v>8.5899e+10</v><v>-Infinity</v>'
       '<v>123456.789012345</v></row></data></xport>')


def same(rows: list[tuple[int, list[float]]], expect: list[tuple[int, list[float]]]) -> bool:
    return [t for t, _ in rows] == [t for t, _ in expect] and all(
        (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-4)
        for (_, ra), (_, rb) in zip(rows, expect, strict=True)
        for a, b in zip(ra, rb, strict=True))


@pytest.mark.parametrize("text", [CURRENT, NUMBERS, YOJSON_2023, JS_LITERAL],
                         ids=["current", "numbers", "yojson-2023", "js-literal"])
def test_every_json_dialect(text: str) -> None:
    u = parse_updates(text.encode(), "application/json")
    assert (u.start, u.step, u.end, u.legend) == (1700000005, 5, 1700000010, LEGEND)
    assert same(u.rows, EXPECT)
    assert u.times() == [1700000005, 1700000010]
    assert u.series()[("vm", "v1")]["vbd_xvda_read"] == [123456.789012345, math.inf]


def test_xml_with_g_format_numbers() -> None:
    u = parse_updates(XML.encode(), "text/xml")
    assert u.legend == LEGEND
    assert u.rows[0][1][1] == 8.5899e09  # %0.5g lost the precision; read as written
    assert same(u.rows[1:], EXPECT[1:])


def test_form_chosen_by_first_character_without_a_content_type() -> None:
    assert parse_updates(b"  " + XML.encode()).legend == LEGEND
    assert parse_updates(JS_LITERAL.encode()).legend == LEGEND


@pytest.mark.parametrize(("body", "message"), [
    (b"", "the reply is empty"),
    (b"<html><body>502 Bad Gateway</body></html>", "the root is <html>"),
    (b"Internal error", "neither XML nor JSON"),
    (XML[:200].encode(), "not well-formed XML"),
    (CURRENT[:150].encode(), "neither JSON nor the older JavaScript form"),
    (b"[1,2,3]", "the top level is not an object"),
    (b'{"meta":{"legend":[]}}', "no data"),
    (b'{"meta":{"legend":"cpu0"},"data":[]}', "legend is not a list"),
    (CURRENT.replace('"NaN"', '"n/a"').encode(), r"value 3: 'n/a' is not a number"),
    (CURRENT.replace('"NaN",', "").encode(), "has 3 values for 4 legend names"),
    (CURRENT.replace('"columns":4', '"columns":5').encode(), "meta.columns is 5"),
    (CURRENT.replace('"t":1700000010', '"t":"soon"').encode(), "t: 'soon' is not a number"),
    (JS_LITERAL.replace("values:", "values=").encode(), "unexpected '=\\[0.0282"),
    (JS_LITERAL.replace("NaN", "alert(1)").encode(), "unexpected name 'alert'"),
    (b"{a:" * 100 + b"1" + b"}" * 100, "nested too deeply"),
    (b"[" * 100000, "nested too deeply"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xport/>', "declares a DTD"),
    (XML.replace("<v>NaN</v>", "<v>NaN</v>x").encode(), "stray text 'x' in <row>"),
    (b'{"meta":"\xff"}', "not UTF-8 text"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_what_cannot_be_read_is_said(body: bytes, message: str) -> None:
    with pytest.raises(RrdParseError, match=message):
        parse_updates(body)


def test_full_rrd_errors() -> None:
    with pytest.raises(RrdParseError, match="the root is <xport>"):
        parse_full_rrd(XML)
    bad = (SAMPLES / "host-rrd-01.xml").read_text().replace("<v>NaN</v>", "<v>1</v><v>2</v>", 1)
    with pytest.raises(RrdParseError, match="row 1 has 2 values for 1 data sources"):
        parse_full_rrd(bad)
